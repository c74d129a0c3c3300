"""Offline evaluation: splits, metrics, baselines and a report, so every claim about
shoprec's recommendations is a number measured beside the standard baselines.

Data path inside this package: interactions (read events) -> split (train / test, no leakage)
-> methods (baselines, NCF, shoprec's adapter; one ``Method`` shape) -> runner (metrics per
segment) -> report (Markdown, JSON, plots).
"""
