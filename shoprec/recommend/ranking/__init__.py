"""The personalised feed's ranking: multi-source candidates, their features, and a ranker
(hand-tuned blend or LightGBM learned from the shop's own events by a time self-split).

state -> candidates -> features -> rankers, wired by pipeline; training builds examples with
the same pipeline cut at past moments.
"""
