"""Batch jobs: scripts users submit to Slurm, run as themselves."""
