"""Imported through ``ZEROLOSS_EXTRA_EXPERIMENTS=fake_experiment_plugin``: registers the fake experiment."""

from fake_experiment import register_fake

register_fake()
