"""Deployment and prediction: one predictor behind batch jobs, Ray Serve endpoints and the embedded library."""
