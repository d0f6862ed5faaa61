"""Modelplane operator: reconciles ModelDeployments into Deployments, Services, HPAs and PDBs."""
