"""Reward and distribution metrics (CLIPScore, PickScore, HPSv2, aesthetic, ImageReward, FID/KID).

Use :func:`pixeljury.load_metric`; model code is imported only when a metric is loaded.
"""
