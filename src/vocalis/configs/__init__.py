"""Packaged Hydra configs (composed with ``initialize_config_module("vocalis.configs")``)."""
