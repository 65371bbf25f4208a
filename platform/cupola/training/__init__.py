"""Training: Tune search per partition, algorithm plug-ins (XGBoost, TensorFlow), the trainer that registers versions."""
