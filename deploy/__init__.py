"""Deployment: replicas behind nginx on one machine (replicas.py, nginx.conf)."""
