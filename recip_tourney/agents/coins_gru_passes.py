"""Hand-written forward and backward passes of :class:`~recip_tourney.agents.coins_gru.ConvGRUNets`.

Both networks of every seed run over a whole episode (T steps of B games) from a zero
hidden state, and the gradient of a loss at their outputs is carried back to the flat
parameters, without autograd (exact up to float rounding; checked against ``torch.nn``
modules and autograd in ``tests/test_coins_ppo.py``).

The passes are feature-major: every tensor of a step is ``(model, feature, game)`` with the
B games contiguous, so each elementwise operation runs over whole contiguous blocks. Biases
ride on a row of ones appended to the hidden state (the hidden projection and the heads are
plain products, and their gradients come with the weights'). A step works in place on its
input projections, which become the gates, and stores the factors ``[A, R, Z, A r]`` its
backward needs; the backward through time is then one product by ``dL/dh`` and two updates
per step, and the weight gradients are single products over all steps. The n gate's
``tanh`` is ``2 sigmoid(2 a) - 1`` with the n-gate weights doubled in the working copy
(exact, :class:`~recip_tourney.agents.coins_gru.WorkingWeights`): ``tanh`` is several times
slower than ``sigmoid`` on CPU. The buffers (:class:`Workspace`) are allocated once and
reused across updates.

Every product and reduction is per model (``bmm`` over the model axis, row sums as products
with a vector of ones), so a seed's numbers never depend on the other seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recip_tourney.agents.coins_gru import ConvGRUNets, WorkingWeights

_relu_backward = torch.ops.aten.threshold_backward


@dataclass
class Encoded:
    """The encoder's activations on M models' rows, kept for the backward pass."""

    x: torch.Tensor  # (M, R0, F) inputs (possibly an expanded view)
    a1: torch.Tensor  # (M, R0, Fc)
    a2: torch.Tensor  # (M, R0, Fc)
    e: torch.Tensor  # (M, R, H); R = R0 g^2 in table mode, else R0


def _ones(models: int, rows: int, like: torch.Tensor) -> torch.Tensor:
    """``(M, 1, rows)`` ones: row sums as products, which round per model."""
    return like.new_ones(models, 1, rows)


def _row_sums(x: torch.Tensor) -> torch.Tensor:
    """Sum over the rows of each model's matrix ``(M, R, K)``: ``(M, 1, K)``."""
    return torch.bmm(_ones(x.shape[0], x.shape[1], x), x)


def encode(w: WorkingWeights, x: torch.Tensor) -> Encoded:
    """The encoder (conv, conv, linear, each + ReLU) of M models on their rows ``x``.

    With ``w.wst`` (table mode) the rows are orbit representatives and the output has
    ``g^2`` rows per input row, one per translation.
    """
    a1 = torch.baddbmm(w.b1, x, w.d1).relu_()
    a2 = torch.baddbmm(w.b2, a1, w.d2).relu_()
    if w.wst is None:
        e = torch.baddbmm(w.bl, a2, w.wl.transpose(1, 2)).relu_()
    else:
        e = torch.baddbmm(w.bst, a2, w.wst.transpose(1, 2)).relu_()
        e = e.view(x.shape[0], -1, w.wl.shape[1])
    return Encoded(x, a1, a2, e)


def encode_backward(
    nets: ConvGRUNets, w: WorkingWeights, enc: Encoded, de: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Parameter gradients of the encoder, ``(M, ...)`` each, given ``de`` (M, R, H), the
    gradient at its output after the ReLU's mask."""
    models = de.shape[0]
    grads = {"encoder.linear.bias": _row_sums(de)}
    if w.wst is None:
        grads["encoder.linear.weight"] = torch.bmm(de.transpose(1, 2), enc.a2)
        da2 = torch.bmm(de, w.wl)
    else:
        de = de.reshape(models, enc.a2.shape[1], -1)
        g_st = torch.bmm(de.transpose(1, 2), enc.a2).view(models, nets.cells, nets.hidden, -1)
        cols = nets.unshifted_columns
        g_wl = g_st[:, 0].index_select(-1, cols[0])
        for tau in range(1, nets.cells):
            g_wl += g_st[:, tau].index_select(-1, cols[tau])
        grads["encoder.linear.weight"] = g_wl
        da2 = torch.bmm(de, w.wst)
    da2 = _relu_backward(da2, enc.a2, 0)
    da1 = _relu_backward(torch.bmm(da2, w.d2.transpose(1, 2)), enc.a1, 0)
    c = nets.channels
    grads["encoder.conv2.weight"] = nets.conv2.kernel_grad(torch.bmm(enc.a1.transpose(1, 2), da2))
    grads["encoder.conv2.bias"] = _row_sums(da2).view(models, c, -1).sum(-1)
    grads["encoder.conv1.weight"] = nets.conv1.kernel_grad(torch.bmm(enc.x.transpose(1, 2), da1))
    grads["encoder.conv1.bias"] = _row_sums(da1).view(models, c, -1).sum(-1)
    return grads


def expand_models(x: torch.Tensor, models: int) -> torch.Tensor:
    """Rows ``(R, F)`` shared by all models (an expanded view), or ``(S, R, F)`` per seed
    (a copy), as ``(M, R, F)``."""
    if x.dim() == 2:
        return x.unsqueeze(0).expand(models, -1, -1)
    seeds = x.shape[0]
    return x.unsqueeze(1).expand(-1, models // seeds, -1, -1).reshape(models, *x.shape[1:])


@dataclass
class Workspace:
    """Buffers of one update, feature-major (the B games of a step contiguous).

    M = 2 S models, N = T B samples (sample ``t B + b``), V table rows. Only the backward
    factors and the hidden states are kept for all steps; the rest is per-step scratch.
    """

    shape: tuple[int, int, int]  # S, T, B
    tab: torch.Tensor | None  # (M, 3H, V) input projections (2n, r, z) of the table rows
    dg: torch.Tensor  # (M, 4H, N) the samples' input projections in rows :3H, then the gates
    #                   [s, r, z]; in the backward pass the input projections' gradients
    #                   there and the hidden projections' (r, z, 2n) in rows H:
    pp: torch.Tensor  # (M, T, 4H, B) backward factors [A, R, Z, A r]
    hs: torch.Tensor  # (M, H + 1, T + 1, B) hidden states, h_0 = 0, last row ones
    out: torch.Tensor  # (M, H + 1, N) relu of the hidden states h_1.. (and a row of ones)
    dout: torch.Tensor  # (M, H, T, B) gradient at the hidden states
    logits: torch.Tensor  # (S, A, N)
    values: torch.Tensor  # (S, 1, N)
    gh_n: torch.Tensor  # (M, H, B) hidden projection of the 2n gate at a step
    dsig: torch.Tensor  # (M, 3H, B) derivatives of the gates s, r, z
    n: torch.Tensor  # (M, H, B) n = 2 s - 1
    d: torch.Tensor  # (M, H, B) h - n
    grad: torch.Tensor  # like the flat parameters
    minus_one: torch.Tensor  # () -1 of the dtype: n = 2 s - 1 in one add

    @classmethod
    def allocate(
        cls, seeds: int, steps: int, batch: int, table: int | None, hidden: int, actions: int,
        like: torch.Tensor,
    ) -> Workspace:
        models, samples, h = 2 * seeds, steps * batch, hidden

        def new(*shape: int) -> torch.Tensor:
            return like.new_empty(shape)

        hs = new(models, h + 1, steps + 1, batch)
        hs[:, :h, 0] = 0
        hs[:, h] = 1
        out = new(models, h + 1, samples)
        out[:, h] = 1
        return cls(
            shape=(seeds, steps, batch), tab=None if table is None else new(models, 3 * h, table),
            dg=new(models, 4 * h, samples),
            pp=new(models, steps, 4 * h, batch), hs=hs, out=out,
            dout=new(models, h, steps, batch), logits=new(seeds, actions, samples),
            values=new(seeds, 1, samples), gh_n=new(models, h, batch),
            dsig=new(models, 3 * h, batch), n=new(models, h, batch), d=new(models, h, batch),
            grad=torch.empty_like(like), minus_one=like.new_full((), -1.0),
        )


# ------------------------------------------------------------------ forward


def forward(
    nets: ConvGRUNets, w: WorkingWeights, ws: Workspace, x: torch.Tensor,
    index: torch.Tensor | None,
) -> Encoded:
    """Both networks over the episode: fills ``ws`` up to the logits and values.

    ``x`` are the encoder's input rows ``(M, R, F)`` and, in table mode, ``index`` (M, N)
    the table row of every sample (``None`` otherwise).
    """
    seeds, steps, batch = ws.shape
    models, h = 2 * seeds, nets.hidden
    enc = encode(w, x)
    gi = ws.dg[:, : 3 * h]
    if ws.tab is None:
        torch.baddbmm(w.bih, w.wih, enc.e.transpose(1, 2), out=gi)
    else:
        torch.baddbmm(w.bih, w.wih, enc.e.transpose(1, 2), out=ws.tab)
        for m in range(models):  # all steps at once: each table row stays in cache
            torch.index_select(ws.tab[m], 1, index[m], out=gi[m])
    gru_forward(nets, w, ws)
    actor, critic = nets.heads()
    out = ws.out.view(seeds, 2, h + 1, -1)
    torch.bmm(actor, out[:, 0], out=ws.logits)
    torch.bmm(critic, out[:, 1], out=ws.values)
    return enc


def gru_forward(nets: ConvGRUNets, w: WorkingWeights, ws: Workspace) -> None:
    """Run the 2 S GRUs over the T steps from h = 0, keeping the backward factors.

    Step t works in place on its input projections ``ws.dg[:, :3H]`` (rows 2n, r, z),
    which end as the gates ``[s, r, z]`` with ``s = sigmoid(2 a)``, ``n = 2 s - 1``.
    With ``g = dL/dh_t``, the gradients of the input projection are ``g [A, R, Z]`` and
    those of the hidden one (r, z, 2n) ``g [R, Z, A r]``, where
    ``A = 2 (1 - z) s (1 - s)``, ``R = A gh_2n r (1 - r)``, ``Z = (h - n) z (1 - z)``;
    ``ws.pp[:, t]`` holds ``[A, R, Z, A r]``.
    """
    steps, batch = ws.shape[1:]
    h = nets.hidden
    whh_rz, whh_n = w.whh[:, : 2 * h], w.whh[:, 2 * h :]
    gh_n, dsig, n, d, hs = ws.gh_n, ws.dsig, ws.n, ws.d, ws.hs
    ss, rr, zz = dsig[:, :h], dsig[:, h : 2 * h], dsig[:, 2 * h :]
    for t in range(steps):
        sig = ws.dg[:, : 3 * h, t * batch : (t + 1) * batch]
        s, r, z = sig[:, :h], sig[:, h : 2 * h], sig[:, 2 * h :]
        prev = hs[:, :, t]
        sig[:, h:].baddbmm_(whh_rz, prev).sigmoid_()
        torch.bmm(whh_n, prev, out=gh_n)
        s.addcmul_(r, gh_n).sigmoid_()
        torch.add(ws.minus_one, s, alpha=2, out=n)  # n = tanh(a) = 2 s - 1
        torch.sub(prev[:, :h], n, out=d)
        torch.addcmul(n, z, d, out=hs[:, :h, t + 1])  # h' = n + z (h - n)
        torch.clamp(hs[:, :h, t + 1], min=0, out=ws.out[:, :h, t * batch : (t + 1) * batch])
        pp = ws.pp[:, t]
        a_, r_, z_, ar_ = (pp[:, i * h : (i + 1) * h] for i in range(4))
        torch.addcmul(sig, sig, sig, value=-1, out=dsig)  # s(1-s), r(1-r), z(1-z)
        torch.addcmul(ss, ss, z, value=-1, out=a_).mul_(2)
        torch.mul(d, zz, out=z_)
        torch.mul(a_, gh_n, out=r_).mul_(rr)
        torch.mul(a_, r, out=ar_)


# ------------------------------------------------------------------ backward


def gru_backward(
    nets: ConvGRUNets, w: WorkingWeights, ws: Workspace, index: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Backward through time. ``ws.dout`` (dL/dh_t from the heads) is consumed; ``ws.dg``
    receives, per sample, ``g [A, R, Z, A r]``: the gradients of the input projection
    (2n, r, z) in its first 3H rows and of the hidden one (r, z, 2n) in its last 3H.

    Returns
    -------
    Tensor, (M, 3H, R): the gradient of the encoder rows' input projections.
    Tensor, (M, 3H, H + 1): that of the hidden projection's weights and bias.
    """
    seeds, steps, batch = ws.shape
    h, models = nets.hidden, 2 * seeds
    whh_t = w.whh[:, :, :h].transpose(1, 2)
    dout, dg = ws.dout, ws.dg
    for t in range(steps - 1, -1, -1):
        g = dout[:, :, t]
        dg_t = dg[:, :, t * batch : (t + 1) * batch]
        if t:  # dL/dh_{t-1} = g z + W_hh^T dgh, with z read before dg_t is overwritten
            dout[:, :, t - 1].addcmul_(g, dg_t[:, 2 * h : 3 * h])
        pp = ws.pp[:, t].view(models, 4, h, batch)
        torch.mul(pp, g.unsqueeze(1), out=dg_t.unflatten(1, (4, h)))
        if t:
            dout[:, :, t - 1].baddbmm_(whh_t, dg_t[:, h:])
    h_prev = ws.hs[:, :, :steps].reshape(models, h + 1, steps * batch)
    g_whh = torch.bmm(dg[:, h:], h_prev.transpose(1, 2))
    dgi = dg[:, : 3 * h]
    if index is None:
        return dgi, g_whh
    dtab = ws.tab.zero_()
    for m in range(models):  # all steps at once: each table row stays in cache
        dtab[m].index_add_(1, index[m], dgi[m])
    return dtab, g_whh


def backward(
    nets: ConvGRUNets, w: WorkingWeights, ws: Workspace, enc: Encoded,
    index: torch.Tensor | None, d_logits: torch.Tensor, d_values: torch.Tensor,
) -> torch.Tensor:
    """The gradient of the summed loss at the flat parameters (into ``ws.grad``), given its
    gradients at the logits (S, 5, N) and the values (S, 1, N) of the last :func:`forward`."""
    seeds, steps, batch = ws.shape
    h, models, samples = nets.hidden, 2 * seeds, steps * batch
    grad_body, grad_heads = nets.split(ws.grad)
    # heads (bias = the ones row of the hidden states)
    actor, critic = nets.heads()
    out = ws.out.view(seeds, 2, h + 1, samples).transpose(2, 3)
    g_actor, g_critic = torch.bmm(d_logits, out[:, 0]), torch.bmm(d_values, out[:, 1])
    for net, g in (("actor", g_actor), ("critic", g_critic)):
        for key, piece in (("weight", g[:, :, :h]), ("bias", g[:, :, h])):
            slot = nets.head[f"{net}.head.{key}"]
            grad_heads[:, slot.offset : slot.offset + slot.size] = piece.reshape(seeds, -1)
    dout = ws.dout.view(seeds, 2, h, samples)
    torch.bmm(actor[:, :, :h].transpose(1, 2), d_logits, out=dout[:, 0])
    torch.mul(critic[:, :, :h].transpose(1, 2), d_values, out=dout[:, 1])
    dout = ws.dout.view(models, h, samples)
    torch.ops.aten.threshold_backward.grad_input(dout, ws.out[:, :h], 0, grad_input=dout)
    # GRU (the hidden bias = the ones row of the hidden states)
    dtab, g_whh = gru_backward(nets, w, ws, index)
    g_wih = torch.bmm(dtab, enc.e)
    g_bih = torch.bmm(dtab, enc.e.new_ones(models, dtab.shape[2], 1))
    de = _relu_backward(torch.bmm(dtab.transpose(1, 2), w.wih), enc.e, 0)
    grads = encode_backward(nets, w, enc, de)
    # working rows (2n, r, z) and (r, z, 2n) back to (r, z, n)
    grads["gru.weight_ih_l0"] = torch.cat([g_wih[:, h:], g_wih[:, :h] * 2], dim=1)
    grads["gru.bias_ih_l0"] = torch.cat([g_bih[:, h:], g_bih[:, :h] * 2], dim=1)
    g_whh = torch.cat([g_whh[:, : 2 * h], g_whh[:, 2 * h :] * 2], dim=1)
    grads["gru.weight_hh_l0"], grads["gru.bias_hh_l0"] = g_whh[:, :, :h], g_whh[:, :, h]
    body = grad_body.view(models, -1)
    for key, g in grads.items():
        slot = nets.body[key]
        body[:, slot.offset : slot.offset + slot.size] = g.reshape(models, -1)
    return ws.grad
