"""The bench baseline: FastAPI + uvicorn + asyncpg doing what triad's webapp does for
GET /healthz and POST /v1/user (same checks, same argon2id parameters, the user row and its
outbox event in one transaction). Used only by `scripts/bench webapp`."""

import asyncio
import json
import os
import uuid
from contextlib import asynccontextmanager
from datetime import timezone

import asyncpg
from argon2 import PasswordHasher
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

HASHER = PasswordHasher(
    memory_cost=int(os.environ["TRIAD_ARGON2_M_COST"]),
    time_cost=int(os.environ["TRIAD_ARGON2_T_COST"]),
    parallelism=int(os.environ["TRIAD_ARGON2_P_COST"]),
)
NO_STORE = {"Cache-Control": "no-cache, no-store, must-revalidate"}
FIELDS = ("email", "password", "first_name", "last_name")
pool = None


@asynccontextmanager
async def lifespan(_app):
    global pool
    pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=1, max_size=16)
    yield
    await pool.close()


app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)


def bad(reason, field=None):
    body = {"error": reason}
    if field:
        body["field"] = field
    return JSONResponse(body, status_code=400)


@app.get("/healthz")
async def healthz(request: Request):
    if request.url.query or request.headers.get("content-length", "0") != "0":
        return bad("/healthz takes no query string or body")
    try:
        await asyncio.wait_for(pool.fetchval("SELECT 1"), 2)
    except Exception:
        return JSONResponse({"error": "database unavailable"}, status_code=503, headers=NO_STORE)
    return Response(status_code=200, headers=NO_STORE)


@app.post("/v1/user")
async def signup(request: Request):
    try:
        body = json.loads(await request.body())
    except ValueError:
        return bad("the body is not valid JSON")
    if not isinstance(body, dict):
        return bad("the body must be a JSON object")
    for key in body:
        if key not in FIELDS:
            return bad(f"unknown field {key!r}", key)
    for key in FIELDS:
        if key not in body:
            return bad(f"{key} is required", key)
        if not isinstance(body[key], str):
            return bad(f"{key} must be a string", key)
    email = body["email"].strip()
    local, _, domain = email.partition("@")
    if not local or "." not in domain or " " in email:
        return bad("email is invalid", "email")
    password = body["password"]
    if not 8 <= len(password) <= 128 or password.isalpha() or not any(c.isalpha() for c in password):
        return bad("password is too short or too weak", "password")
    first, last = body["first_name"].strip(), body["last_name"].strip()
    if not first or not last:
        return bad("names must not be empty")
    loop = asyncio.get_running_loop()
    password_hash = await loop.run_in_executor(None, HASHER.hash, password)
    user_id, event_id = uuid.uuid4(), uuid.uuid4()
    try:
        async with pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "INSERT INTO users (id, email, password_hash, first_name, last_name) "
                "VALUES ($1, $2, $3, $4, $5) "
                "RETURNING id, email, first_name, last_name, verified, created_at, updated_at",
                user_id, email, password_hash, first, last,
            )
            created = row["created_at"].astimezone(timezone.utc)
            event = {
                "type": "user.created", "event_id": str(event_id), "user_id": str(user_id),
                "email": email, "first_name": first,
                "occurred_at": created.isoformat().replace("+00:00", "Z"),
            }
            await conn.execute(
                "INSERT INTO outbox (id, event_type, payload) VALUES ($1, $2, $3)",
                event_id, "user.created", json.dumps(event),
            )
    except asyncpg.UniqueViolationError:
        return JSONResponse({"error": f"a user with e-mail {email} already exists"}, status_code=409)
    user = dict(row)
    user["id"] = str(user["id"])
    user["created_at"] = user["created_at"].isoformat()
    user["updated_at"] = user["updated_at"].isoformat()
    return JSONResponse(user, status_code=201)
