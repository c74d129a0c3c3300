"""Online measurement: which list every answer was (rec_id), A/B experiments, attribution of
clicks and purchases to lists, and the shop's online measures.

measurement.OnlineMeasurement is the entry point the engine holds: experiments (variants and
assignment) -> tracking (served lists) -> attribution (events credited at ingest) -> stats
(/stats, /metrics, ``shoprec report``, the dashboard).
"""
