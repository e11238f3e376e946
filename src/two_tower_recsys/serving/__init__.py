"""What ``two-tower serve`` runs: MLflow's scoring app behind a guard that keeps errors clean."""
