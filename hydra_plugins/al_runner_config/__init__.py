"""Hydra plugin hook: Hydra imports every module under `hydra_plugins` when it scans for plugins, before
composing any config. Registering here (as Hydra's own launcher plugins do) makes the typed schema
`al_runner_schema` (with `al_runner_closed`, which closes its groups after the group files merged) and the
`${al_run_id:}` resolver available to every composition of al_runner's config, from `al-run`, from tests'
`compose(...)`, or from a notebook."""

from al_runner import config_schema, identity

config_schema.register()
identity.register_resolver()
