"""Offline evaluation: ranking metrics (`metrics`) and reference recommenders (`baselines`)."""
