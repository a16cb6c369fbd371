"""A generated catalogue of realistic tool schemas, and prompts that each need one tool.

25 services x 6 verbs = up to 150 tools, with JSON-schema inputs like real agent tools
(a GitHub issue, a calendar event, a database row, ...). Many tools look alike on purpose
(create_issue / create_ticket / create_task), which is what makes selection hard. Each
prompt is worded like a user would say it, not copied from the tool's description.
Deterministic for a seed.
"""

from __future__ import annotations

import random
from typing import Any

# service, entity, plural, what the service is, {field: (json type, description)}
SERVICES: list[tuple[str, str, str, str, dict[str, tuple[str, str]]]] = [
    (
        "github",
        "issue",
        "issues",
        "GitHub repositories",
        {
            "repo": ("string", "owner/name"),
            "title": ("string", "issue title"),
            "labels": ("array", "label names"),
        },
    ),
    (
        "jira",
        "ticket",
        "tickets",
        "the Jira project tracker",
        {
            "project": ("string", "project key"),
            "summary": ("string", "ticket summary"),
            "priority": ("string", "Highest..Lowest"),
        },
    ),
    (
        "todoist",
        "task",
        "tasks",
        "the personal to-do list",
        {"content": ("string", "task text"), "due": ("string", "due date")},
    ),
    (
        "gcal",
        "event",
        "events",
        "Google Calendar",
        {
            "start": ("string", "ISO start time"),
            "end": ("string", "ISO end time"),
            "attendees": ("array", "emails"),
        },
    ),
    (
        "gmail",
        "email",
        "emails",
        "the Gmail mailbox",
        {
            "to": ("string", "recipient"),
            "subject": ("string", "subject line"),
            "body": ("string", "message body"),
        },
    ),
    (
        "slack",
        "message",
        "messages",
        "Slack channels",
        {"channel": ("string", "channel name"), "text": ("string", "message text")},
    ),
    (
        "postgres",
        "row",
        "rows",
        "the PostgreSQL database",
        {"table": ("string", "table name"), "where": ("string", "SQL condition")},
    ),
    (
        "s3",
        "object",
        "objects",
        "Amazon S3 buckets",
        {"bucket": ("string", "bucket name"), "key": ("string", "object key")},
    ),
    (
        "docker",
        "container",
        "containers",
        "the local Docker engine",
        {"image": ("string", "image name"), "ports": ("array", "port mappings")},
    ),
    (
        "k8s",
        "deployment",
        "deployments",
        "the Kubernetes cluster",
        {"namespace": ("string", "namespace"), "replicas": ("integer", "replica count")},
    ),
    (
        "stripe",
        "invoice",
        "invoices",
        "Stripe billing",
        {"customer": ("string", "customer id"), "amount": ("integer", "amount in cents")},
    ),
    (
        "hubspot",
        "contact",
        "contacts",
        "the HubSpot CRM",
        {"email": ("string", "contact email"), "company": ("string", "company name")},
    ),
    (
        "notion",
        "page",
        "pages",
        "the Notion workspace",
        {"parent": ("string", "parent page id"), "title": ("string", "page title")},
    ),
    (
        "drive",
        "file",
        "files",
        "Google Drive",
        {"folder": ("string", "folder id"), "name": ("string", "file name")},
    ),
    (
        "spotify",
        "playlist",
        "playlists",
        "the Spotify library",
        {"name": ("string", "playlist name"), "tracks": ("array", "track ids")},
    ),
    (
        "shopify",
        "order",
        "orders",
        "the Shopify store",
        {"order_id": ("string", "order number"), "status": ("string", "fulfilment status")},
    ),
    (
        "zendesk",
        "support case",
        "support cases",
        "Zendesk customer support",
        {"requester": ("string", "customer email"), "subject": ("string", "case subject")},
    ),
    (
        "twilio",
        "text message",
        "text messages",
        "Twilio SMS",
        {"to": ("string", "phone number"), "body": ("string", "text")},
    ),
    (
        "weather",
        "forecast",
        "forecasts",
        "the weather service",
        {"city": ("string", "city name"), "days": ("integer", "days ahead")},
    ),
    (
        "maps",
        "route",
        "routes",
        "the maps and directions service",
        {"origin": ("string", "start address"), "destination": ("string", "end address")},
    ),
    (
        "contacts",
        "phone contact",
        "phone contacts",
        "the phone's address book",
        {"name": ("string", "full name"), "phone": ("string", "phone number")},
    ),
    (
        "expenses",
        "expense report",
        "expense reports",
        "the company expense system",
        {"amount": ("number", "amount"), "category": ("string", "travel, meals, ...")},
    ),
    (
        "hr",
        "leave request",
        "leave requests",
        "the HR system",
        {"start": ("string", "first day off"), "days": ("integer", "number of days")},
    ),
    (
        "wiki",
        "article",
        "articles",
        "the internal wiki",
        {"space": ("string", "wiki space"), "title": ("string", "article title")},
    ),
    (
        "pagerduty",
        "incident",
        "incidents",
        "PagerDuty on-call alerting",
        {"service": ("string", "service id"), "urgency": ("string", "high or low")},
    ),
]

# verb: (description template, prompt templates worded as a user would)
VERBS: dict[str, tuple[str, list[str]]] = {
    "list": (
        "List the {plural} in {what}, newest first, with optional filters.",
        [
            "what {plural} do I have in {svc} right now?",
            "give me an overview of all {plural} on {svc}",
        ],
    ),
    "get": (
        "Fetch one {entity} from {what} by its id, with all its fields.",
        [
            "pull up the full details of {entity} {ident} in {svc}",
            "open {svc} {entity} {ident} and tell me what it says",
        ],
    ),
    "create": (
        "Create a new {entity} in {what}.",
        [
            "add a new {entity} on {svc} called '{title}'",
            "please set up a {entity} in {svc}: {title}",
        ],
    ),
    "update": (
        "Change fields of an existing {entity} in {what}.",
        [
            "modify {entity} {ident} on {svc} so that it reads '{title}'",
            "edit the {svc} {entity} {ident}, it should now say {title}",
        ],
    ),
    "delete": (
        "Delete an {entity} from {what} permanently.",
        [
            "get rid of {entity} {ident} in {svc}",
            "remove the {svc} {entity} {ident}, we no longer need it",
        ],
    ),
    "search": (
        "Full-text search over {plural} in {what}.",
        [
            "find any {plural} in {svc} that mention '{title}'",
            "look through {svc} for {plural} about {title}",
        ],
    ),
}
# How a user names a service in a prompt, where it differs from the tool prefix.
SPOKEN = {
    "gcal": "my calendar",
    "gmail": "Gmail",
    "postgres": "the database",
    "k8s": "Kubernetes",
    "s3": "S3",
    "hr": "the HR portal",
    "drive": "Google Drive",
    "maps": "Maps",
    "contacts": "my address book",
    "expenses": "Expensify",
    "wiki": "Confluence",
    "weather": "the weather app",
    "twilio": "SMS",
    "todoist": "my to-do app",
    "pagerduty": "PagerDuty",
    "hubspot": "HubSpot",
    "github": "GitHub",
}
TITLES = [
    "quarterly budget",
    "login bug",
    "team offsite",
    "server migration",
    "Q3 roadmap",
    "invoice 2291",
    "onboarding Maria",
    "release 4.2",
]


def _tool(svc: str, entity: str, plural: str, what: str, fields: dict, verb: str) -> dict[str, Any]:
    desc = VERBS[verb][0].format(entity=entity, plural=plural, what=what)
    props: dict[str, Any] = {}
    required: list[str] = []
    if verb in {"get", "update", "delete"}:
        props["id"] = {"type": "string", "description": f"the {entity} id"}
        required.append("id")
    if verb in {"create", "update"}:
        for name, (kind, text) in fields.items():
            props[name] = {"type": kind, "description": text}
            if kind == "array":
                props[name]["items"] = {"type": "string"}
        if verb == "create":
            required.append(next(iter(fields)))
    if verb == "search":
        props["query"] = {"type": "string", "description": "words to search for"}
        required.append("query")
    if verb in {"list", "search"}:
        props["limit"] = {"type": "integer", "description": "most results", "default": 20}
    name = (
        f"{svc}_{verb}_{plural.replace(' ', '_')}"
        if verb in {"list", "search"}
        else f"{svc}_{verb}_{entity.replace(' ', '_')}"
    )
    return {
        "name": name,
        "description": desc,
        "input_schema": {"type": "object", "properties": props, "required": required},
    }


def catalog(n: int = 150, seed: int = 0) -> list[dict[str, Any]]:
    """`n` tool schemas (at most 150), a deterministic sample for the seed."""
    tools = [_tool(*s, verb) for s in SERVICES for verb in VERBS]
    rng = random.Random(seed)
    rng.shuffle(tools)
    return tools[: min(n, len(tools))]


def prompts(tools: list[dict[str, Any]], seed: int = 0) -> list[tuple[str, str]]:
    """(prompt, needed tool name) pairs: two phrasings per tool in the catalogue."""
    rng = random.Random(seed)
    by_name = {t["name"]: t for t in tools}
    out = []
    for svc, entity, plural, _what, _fields in SERVICES:
        for verb, (_desc, templates) in VERBS.items():
            for template in templates:
                probe = _tool(svc, entity, plural, "", {"x": ("string", "")}, verb)["name"]
                if probe not in by_name:
                    continue
                text = template.format(
                    svc=SPOKEN.get(svc, svc.capitalize()),
                    entity=entity,
                    plural=plural,
                    ident=rng.randint(100, 9999),
                    title=rng.choice(TITLES),
                )
                out.append((text[0].upper() + text[1:], probe))
    return out
