"""al_runner's Hydra launchers (Hydra instantiates launchers only from the hydra_plugins package):
`joblib_gpus` (hydra/launcher=parallel, gpu_shared) and `submitit_slurm` (hydra/launcher=slurm, slurm_local)."""
