"""Adapters that put dualhead's assigner under other detectors' training code."""
