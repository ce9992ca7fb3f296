"""Every IPD-Analytic agent: a shared contract (one base class) plus each rule's own oracle."""

from __future__ import annotations

from dataclasses import replace

import oracles
import pytest
import torch
from conftest import tiny_artifacts

from recip_tourney import registry
from recip_tourney.agents.base import AnalyticAgent, MatchContext
from recip_tourney.agents.influence import influence_terms, shaped_rewards, shaped_value
from recip_tourney.envs.ipd import STATES
from recip_tourney.envs.ipd_analytic import AnalyticIPD, joint
from recip_tourney.tournament.analytic import play_analytic
from recip_tourney.tournament.schedule import Player, SeedSlot, round_robin

GAME = "ipd-analytic"
F64 = torch.float64


def build(name: str, dtype: torch.dtype = F64, **params: object) -> AnalyticAgent:
    """An agent with ``params``; one that needs pretraining gets tiny ci-profile artifacts."""
    info = registry.agent(GAME, name)
    if name == "mmaml":
        params = {"init": "trained", "n_inits": 3, **params}  # the tiny trained artifact
    agent = info.cls(info.params(**params), AnalyticIPD(0.96, dtype), 1.0)
    if info.needs_pretraining:
        agent.prepare(MatchContext("agent", (SeedSlot(0, 1, "m"),), 16, tiny_artifacts(name)))
    return agent


def random_logits(seed: int, batch: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Two batches of state-major (5, batch) logits."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(2, 5, batch, generator=gen, dtype=F64).unbind(0)


class AgentContract:
    """What every registered agent must satisfy. Subclass it once per agent (``name``)."""

    name: str
    learns: bool

    @property
    def info(self) -> registry.AgentInfo:
        return registry.agent(GAME, self.name)

    def test_registered_with_summary_reference_and_metadata(self):
        assert self.info.summary, "class docstring needs a summary line"
        assert self.info.reference, "cite the paper the agent comes from"
        assert self.info.learns is self.learns
        assert self.info.cls.__doc__ and len(self.info.cls.__doc__.strip()) > 20

    def test_defaults_validate_and_unknown_params_are_rejected(self):
        self.info.params()
        with pytest.raises(ValueError):
            self.info.params(no_such_parameter=1)

    def test_initial_logits_are_deterministic_under_a_seed(self):
        agent = build(self.name)
        first = agent.initial_logits(8, torch.Generator().manual_seed(7))
        again = agent.initial_logits(8, torch.Generator().manual_seed(7))
        assert first.shape == (len(STATES), 8) and first.dtype == F64
        torch.testing.assert_close(first, again, rtol=0, atol=0)

    def test_update_returns_finite_detached_logits(self):
        agent, game = build(self.name), AnalyticIPD(0.96, F64)
        own, other = random_logits(1)
        with torch.no_grad():
            new = agent.update(game.evaluate(own, other))
        assert new.shape == own.shape and torch.isfinite(new).all() and not new.requires_grad
        assert (not torch.equal(new, own)) is self.learns

    def test_a_short_match_records_sane_numbers(self):
        spec = round_robin(
            GAME,
            {"batch": 8, "updates": 5},
            "h",
            0,
            [Player(self.name, self.info.params().model_dump())],
            2,
        )[0]
        if self.info.needs_pretraining:
            artifacts = tiny_artifacts(self.name)
            spec = replace(spec, artifacts={"agent": artifacts, "opponent": artifacts})
        for record in play_analytic(spec):
            assert -3.0 - 1e-5 <= record["summary"]["reward"] <= 1e-5
            assert len(record["curves"]["reward"]) == 5
            coop = record["cooperation"]["agent"]
            assert set(coop) == {"overall", *STATES}
            assert all(0.0 <= p <= 1.0 for p in coop.values())


def test_every_registered_agent_has_a_contract_test():
    tested = {cls.name for cls in AgentContract.__subclasses__()}
    assert {a.name for a in registry.agents(GAME)} <= tested


# ------------------------------------------------------------------------- fixed strategies
class TestAlwaysCooperate(AgentContract):
    name, learns = "allc", False


class TestAlwaysDefect(AgentContract):
    name, learns = "alld", False


class TestTitForTat(AgentContract):
    name, learns = "tft", False

    def test_policy_is_tit_for_tat(self):
        probs = torch.sigmoid(build("tft").initial_logits(1, torch.Generator()))[:, 0]
        torch.testing.assert_close(
            probs, torch.tensor([1.0, 1, 0, 1, 0], dtype=F64), atol=1e-8, rtol=0
        )


class TestRandom(AgentContract):
    name, learns = "random", False

    def test_p_cooperate_parameter(self):
        probs = torch.sigmoid(build("random", p_cooperate=0.2).initial_logits(3, torch.Generator()))
        torch.testing.assert_close(probs, torch.full((5, 3), 0.2, dtype=F64))


# ---------------------------------------------------------------------------- learners
class TestNaiveLearner(AgentContract):
    name, learns = "nl", True

    def test_step_is_lr_times_the_exact_gradient(self):
        own, other = random_logits(2)
        theta = own.T.clone().requires_grad_(True)
        value, _ = oracles.values(theta, other.T)
        (grad,) = torch.autograd.grad(value.sum(), theta)
        new = build("nl", lr=0.5).update(AnalyticIPD(0.96, F64).evaluate(own, other))
        torch.testing.assert_close(new, own + 0.5 * grad.T)


class TestLola(AgentContract):
    name, learns = "lola", True

    def test_matches_nested_autograd_with_both_second_order_terms(self):
        own, other = random_logits(3)
        new = build("lola").update(AnalyticIPD(0.96, F64).evaluate(own, other))
        torch.testing.assert_close(new, oracles.lola_step(own, other))

    def test_matches_the_oracle_when_moving_second(self):
        """In slot p2 LOLA gets the flipped view of an evaluation made from p1's side."""
        own, other = random_logits(10)
        view = AnalyticIPD(0.96, F64).evaluate(other, own).flip()
        torch.testing.assert_close(build("lola").update(view), oracles.lola_step(own, other))

    @pytest.mark.parametrize("lookahead", [0.5, 2.0])
    def test_lookahead_scales_only_the_shaping_term(self, lookahead):
        own, other = random_logits(11)
        new = build("lola", lr=0.3, lookahead=lookahead).update(
            AnalyticIPD(0.96, F64).evaluate(own, other)
        )
        torch.testing.assert_close(new, oracles.lola_step(own, other, lr=0.3, eta=lookahead))

    def test_differs_from_a_naive_step(self):
        own, other = random_logits(4)
        view = AnalyticIPD(0.96, F64).evaluate(own, other)
        assert not torch.allclose(build("lola").update(view), build("nl").update(view))


def triple_chain_reference(opponent, rc, reward, gamma=0.96):
    """The reference code's 64-state second-order chain, built and solved densely."""
    pa, pb = torch.sigmoid(opponent.T), torch.sigmoid(rc.T)
    p0 = joint(pa[:, 0], pb[:, 0])
    step = joint(pa[:, 1:], pb[:, [1, 3, 2, 4]])  # (B, 4, 4), opponent's side
    batch = opponent.shape[1]
    rho = torch.einsum("na,nab,nbc->nabc", p0, step, step).reshape(batch, 64)
    big = torch.zeros(batch, 4, 4, 4, 4, 4, 4, dtype=opponent.dtype)
    for a in range(4):
        for b in range(4):
            for c in range(4):
                big[:, a, b, c, b, c, :] = step[:, c, :]
    big = big.reshape(batch, 64, 64)
    eye = torch.eye(64, dtype=opponent.dtype)
    m = torch.linalg.solve((eye - gamma * big).mT, rho.unsqueeze(-1)).squeeze(-1)
    return (m * reward.reshape(batch, 64)).sum(-1)


class TestReciprocator(AgentContract):
    name, learns = "reciprocator", True

    @pytest.mark.parametrize("mode", ["as_implemented", "corrected"])
    def test_shaped_value_equals_the_64_state_chain(self, mode):
        opponent, rc = random_logits(5, batch=4)
        gen = torch.Generator().manual_seed(0)
        own_b, opp_b = torch.rand(2, 4, 5, generator=gen, dtype=F64)
        seen = AnalyticIPD(0.96, F64).evaluate(opponent, rc)
        terms = influence_terms(own_b, opp_b, mode)
        total, reciprocal = shaped_value(seen.visitation.T, seen.transition(), *terms, 5.0)
        full = shaped_rewards(own_b, opp_b, 5.0, mode)
        torch.testing.assert_close(total, triple_chain_reference(opponent, rc, full))
        rr_only = full - shaped_rewards(own_b, opp_b, 0.0, mode)
        torch.testing.assert_close(reciprocal, triple_chain_reference(opponent, rc, rr_only))

    def test_reciprocal_reward_by_hand_with_uniform_baselines(self):
        half = torch.full((1, 5), 0.5, dtype=F64)
        shaped = shaped_rewards(half, half, 5.0, "corrected")
        reciprocal = shaped - shaped_rewards(half, half, 0.0, "corrected")
        # outcomes from the opponent's side: 0 = CC, 1 = C/rc D, 2 = D/rc C, 3 = DD
        # grudge(k_prev, k=2): rc cooperated, the opponent defected: baseline -2 minus -3 = +1
        # influence(k=2, k_next=1): rc defected on a cooperator: baseline -2 minus -3 = +1
        assert reciprocal[0, 0, 2, 1].item() == pytest.approx(5.0 * 1 * 1)
        assert shaped[0, 0, 2, 1].item() == pytest.approx(5.0 + 0.0)  # rc's payoff in DC is 0
        # grudge(k=0, CC): baseline -2 minus -1 = -1; influence(k_next=0): -2 minus -1 = -1
        assert reciprocal[0, 3, 0, 0].item() == pytest.approx(5.0)

    @pytest.mark.parametrize(
        ("mode", "entries"), [("as_implemented", [0, 1, 2, 3]), ("corrected", [1, 3, 2, 4])]
    )
    def test_baseline_lookup_per_outcome(self, mode, entries):
        """Outcome k_prev reads the opponent baseline at entry idx(k_prev) (spec 7.5 quirk 1)."""
        own = torch.full((1, 5), 0.5, dtype=F64)
        opponent = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.6]], dtype=F64)
        reciprocal = shaped_rewards(own, opponent, 5.0, mode) - shaped_rewards(
            own, opponent, 0.0, mode
        )
        # with a uniform own baseline, influence(CC -> CC) = -2 - (-1) = -1, and
        # grudge(k_prev, CC) = 2 p - 2, where p is the baseline entry read for k_prev
        grudge = reciprocal[0, :, 0, 0] / (5.0 * -1.0)
        read = (grudge + 2) / 2
        torch.testing.assert_close(read, opponent[0, entries])

    def test_gradient_step_on_the_shaped_value(self):
        rc_agent = build("reciprocator", opponent_view="pre_update")
        rc, opponent = random_logits(6, batch=4)
        game = AnalyticIPD(0.96, F64)
        new = rc_agent.update(game.evaluate(rc, opponent))
        half = torch.full((4, 5), 0.5, dtype=F64)
        shaped = shaped_rewards(half, half, 5.0, "as_implemented")
        theta = rc.clone().requires_grad_(True)
        value = triple_chain_reference(opponent, theta, shaped)
        (grad,) = torch.autograd.grad(value.sum(), theta)
        torch.testing.assert_close(new, rc + grad)

    def test_moving_second_it_sees_the_updated_opponent_only_as_implemented(self):
        rc, opponent = random_logits(7, batch=4)
        view = AnalyticIPD(0.96, F64).evaluate(rc, opponent)
        moved = opponent + 1.0
        faithful = build("reciprocator").update(view, moved)
        pre = build("reciprocator", opponent_view="pre_update").update(view, moved)
        fresh = build("reciprocator").update(view, None)
        torch.testing.assert_close(pre, fresh)
        assert not torch.allclose(faithful, pre)

    def test_baselines_refresh_every_target_period(self):
        agent = build("reciprocator", target_period=3)
        rc, opponent = random_logits(8, batch=4)
        game = AnalyticIPD(0.96, F64)
        history = []
        for _ in range(6):
            rc = agent.update(game.evaluate(rc, opponent))
            history.append(agent._own_baseline.clone())
        changed = [not torch.equal(a, b) for a, b in zip(history, history[1:], strict=False)]
        # counter starts at 1 and counts updates: refreshes when it reaches 3 and 6
        assert changed == [True, False, False, True, False]

    def test_logs_the_reciprocal_reward(self):
        agent = build("reciprocator")
        rc, opponent = random_logits(9, batch=4)
        agent.update(AnalyticIPD(0.96, F64).evaluate(rc, opponent))
        assert agent.diagnostics()["reciprocal_reward"].shape == (4,)


# ----------------------------------------------------- batching seeds changes no number
@pytest.mark.parametrize("pairing", [("reciprocator", "lola"), ("nl", "reciprocator")])
def test_a_seed_gives_the_same_numbers_alone_or_batched_with_others(pairing):
    players = [Player(n, registry.agent(GAME, n).params().model_dump()) for n in pairing]
    settings = {"batch": 32, "updates": 12}
    specs = round_robin(GAME, settings, "h", 0, players, 3)
    spec = next(s for s in specs if (s.agent.name, s.opponent.name) == pairing)
    together = play_analytic(spec)
    alone = play_analytic(spec.without({s.match_id for s in spec.seeds[:2]}))
    assert together[2]["summary"] == alone[0]["summary"]
    assert together[2]["curves"] == alone[0]["curves"]
    assert together[2]["cooperation"] == alone[0]["cooperation"]


# ------------------------------------------------------------------------- meta-learners
class TestMMAML(AgentContract):
    name, learns = "mmaml", True

    def test_plays_every_initialisation_on_an_equal_block_of_games(self):
        agent = build("mmaml")
        starts = tiny_artifacts("mmaml")[0]["logits"]
        logits = agent.initial_logits(6, torch.Generator())
        expected = starts.repeat_interleave(2, dim=0).T
        torch.testing.assert_close(logits, expected, rtol=0, atol=0)

    def test_published_initialisations_need_no_artifact(self):
        info = registry.agent(GAME, "mmaml")
        agent = info.cls(info.params(init="published"), AnalyticIPD(0.96, F64), 1.0)
        agent.prepare(MatchContext("agent", (), 10, []))
        assert agent.replicas == 10
        first = agent.initial_logits(10, torch.Generator())[:, 0]
        torch.testing.assert_close(
            first, torch.tensor([4.327, 4.493, -4.732, 0.075, -3.233], dtype=F64)
        )

    def test_updates_like_a_naive_learner_with_lr_one(self):
        own, other = random_logits(4)
        view = AnalyticIPD(0.96, F64).evaluate(own, other)
        torch.testing.assert_close(build("mmaml").update(view), build("nl").update(view))

    def test_a_pairing_averages_over_the_initialisations(self):
        spec = round_robin(GAME, {"batch": 4, "updates": 3, "dtype": "float64"}, "h", 0,
                           [Player("mmaml", {**registry.agent(GAME, "mmaml").params(
                               init="trained", n_inits=3).model_dump()})], 1)[0]  # fmt: skip
        arts = tiny_artifacts("mmaml")
        record = play_analytic(replace(spec, artifacts={"agent": arts, "opponent": arts}))[0]
        assert len(record["curves"]["reward"]) == 3


class TestMFOS(AgentContract):
    name, learns = "mfos", True

    def test_samples_its_next_policy_from_the_trained_meta_policy(self):
        own, other = random_logits(5)
        view = AnalyticIPD(0.96, F64).evaluate(own, other)
        first, again = build("mfos").update(view), build("mfos").update(view)
        torch.testing.assert_close(first, again, rtol=0, atol=0)  # per-seed generator
        agent = build("mfos")
        agent.update(view)
        assert not torch.equal(agent.update(view), first)  # a fresh draw each game

    def test_self_play_artifact_gives_each_slot_its_own_player(self):
        arts = tiny_artifacts("mfos")  # trained against itself: the self-play curriculum
        assert set(arts[0]) == {"player0", "player1"}
        own, other = random_logits(6)
        view = AnalyticIPD(0.96, F64).evaluate(own, other)
        moves = {}
        for role in ("agent", "opponent"):
            info = registry.agent(GAME, "mfos")
            agent = info.cls(info.params(), AnalyticIPD(0.96, F64), 1.0)
            agent.prepare(MatchContext(role, (SeedSlot(0, 1, "m"),), 16, arts))
            agent._generators = [torch.Generator().manual_seed(0)]  # same noise for both
            moves[role] = agent.update(view)
        assert not torch.allclose(moves["agent"], moves["opponent"])

    def test_pairings_are_played_as_the_meta_game_both_from_the_same_point(self):
        # moving second, the as-implemented Reciprocator would see the first mover's new
        # policy; against M-FOS it must learn from the policy just played, like pre_update
        arts = tiny_artifacts("mfos")
        params = registry.agent(GAME, "mfos").params().model_dump()
        curves = {}
        for view in ("as_implemented", "pre_update"):
            rc = registry.agent(GAME, "reciprocator").params(opponent_view=view).model_dump()
            spec = round_robin(GAME, {"batch": 4, "updates": 4, "dtype": "float64"}, "h", 0,
                               [Player("mfos", params), Player("reciprocator", rc)], 1)[1]
            assert (spec.agent.name, spec.opponent.name) == ("mfos", "reciprocator")
            spec = replace(spec, seeds=(replace(spec.seeds[0], seed=11),),
                           artifacts={"agent": arts})  # fmt: skip
            curves[view] = play_analytic(spec)[0]["curves"]["opponent_reward"]
        assert curves["as_implemented"] == curves["pre_update"]
