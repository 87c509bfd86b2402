"""gunicorn settings for realtime as ``make run`` uses them (``gunicorn -c gunicorn.conf.py``).

Everything lives in the package, in :mod:`realtime.gunicorn_conf`, so that an app embedding
realtime gets the same hooks with ``gunicorn -c python:realtime.gunicorn_conf myapp:app``. This
file only re-exports it: gunicorn reads settings and hooks as attributes of the config module,
and the hooks keep their state (the embedded Redis, the metrics directory) in their own module.
Override a value by assigning it below the import.
"""

from realtime.gunicorn_conf import *  # noqa: F403
