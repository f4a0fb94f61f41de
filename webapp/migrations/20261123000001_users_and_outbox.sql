-- Users, and the transactional outbox their "user created" events are published from.

CREATE TABLE users (
    id            uuid        PRIMARY KEY,
    email         text        NOT NULL,
    password_hash text        NOT NULL,
    first_name    text        NOT NULL,
    last_name     text        NOT NULL,
    verified      boolean     NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- E-mail addresses are unique regardless of case; two racing signups meet here.
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));

CREATE TABLE outbox (
    id              uuid        PRIMARY KEY,
    event_type      text        NOT NULL,
    payload         text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    sent_at         timestamptz
);

-- The publisher only ever looks at pending events, oldest first.
CREATE INDEX outbox_pending_idx ON outbox (created_at) WHERE sent_at IS NULL;
