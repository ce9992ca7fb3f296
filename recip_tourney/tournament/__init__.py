"""Scheduling, playing and storing the matches of a tournament."""
