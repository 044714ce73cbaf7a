"""dltrain's Optuna sweeper, a Hydra plugin: ``hydra/sweeper=dltrain_optuna`` (configs/hpo/*.yaml)."""
