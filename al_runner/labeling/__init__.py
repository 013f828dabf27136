"""al-label: active learning on a user's own images, with people (files or Label Studio) as the oracle.

`cli` (the command line: `al-label`, or `python -m al_runner.labeling`), `project` (the project directory),
`formats` (label files in), `importer` (checks), `exports` (picks, Label Studio tasks, contact sheet),
`classification` / `detection` (the two tasks), `commands` (init, next, import, status), `label_studio` (sync
through the SDK).
"""
