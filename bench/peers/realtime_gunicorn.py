"""The repository's gunicorn.conf.py, unchanged except for the access log, which is off.

Every server in the suite runs without an access log (nginx ``access_log off``, uvicorn
``--no-access-log``, flask-sse's gunicorn has none by default), so a publish-throughput figure
measures publishing, not log formatting.
"""

import runpy
from pathlib import Path

_conf = runpy.run_path(str(Path(__file__).resolve().parents[2] / "gunicorn.conf.py"))
globals().update({k: v for k, v in _conf.items() if not k.startswith("__")})
accesslog = None
