"""Horizontal SecureBoost: clients agree on bins and send securely aggregated histograms; the aggregator grows the trees."""
