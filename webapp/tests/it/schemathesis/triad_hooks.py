"""Schemathesis hooks of webapp/tests/it/schemathesis.rs.

HTTP Basic credentials for /v1/user/self that follow the run's own password changes: when a
PUT /v1/user/self that changed the password is answered 204, later requests sign in with the
new one, so GET and PUT /v1/user/self stay signed in for the whole run instead of answering
401 to everything after the first change.
"""

import base64
import os
import threading

import schemathesis

EMAIL = os.environ["TRIAD_ST_EMAIL"]
_lock = threading.Lock()
_password = os.environ["TRIAD_ST_PASSWORD"]


@schemathesis.auth(refresh_interval=None).apply_to(path="/v1/user/self")
class CurrentPassword:
    def get(self, case, ctx):
        with _lock:
            return _password

    def set(self, case, password, ctx):
        token = base64.b64encode(f"{EMAIL}:{password}".encode()).decode()
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Basic {token}"


@schemathesis.hook
def after_call(ctx, case, response):
    global _password
    body = case.body
    if (
        case.method.upper() == "PUT"
        and case.path == "/v1/user/self"
        and response.status_code == 204
        and isinstance(body, dict)
        and isinstance(body.get("password"), str)
    ):
        with _lock:
            _password = body["password"]
