"""An 80-message ops chat: a fleet of services alpha-1..alpha-12 (and look-alikes such as
alpha-17 and alpha-70), deploys, incidents and port changes, as a real on-call history reads.

Messages 14-15 are the only ones that give alpha-7's port (8003). Every other turn talks
about ports, services and the same fleet, so word overlap and sentence similarity alone
cannot tell which old turn answers "What was the port of alpha-7?".
"""

from __future__ import annotations

# (user, assistant) per turn; turn n is messages 2n and 2n+1.
TURNS: list[tuple[str, str]] = [
    (
        "We're taking over on-call for the alpha fleet this week. Twelve services, alpha-1 "
        "to alpha-12, all behind the edge proxy on the ops-east cluster. Keep a running log.",
        "Understood. I'll track deploys, incidents and config changes for alpha-1 through "
        "alpha-12 on ops-east and summarize at each handoff.",
    ),
    (
        "First thing: alpha-1 is the auth gateway and listens on port 8011. Its health "
        "check is /healthz and it should answer in under 50 ms.",
        "Noted: alpha-1 (auth gateway), port 8011, /healthz under 50 ms. I'll add an alert "
        "if the p95 of the health check goes above that.",
    ),
    (
        "alpha-2 is the billing worker, no inbound port, it pulls from the invoices queue. "
        "It crashed twice last night with exit code 137.",
        "Exit code 137 is an OOM kill. alpha-2's memory limit is 512Mi; the invoice batch "
        "of the first of the month is the likely trigger. I suggest raising it to 1Gi.",
    ),
    (
        "Raise it to 1Gi then and redeploy alpha-2. Also alpha-3 moved to port 8007 after "
        "the proxy change, make sure the service map says so.",
        "alpha-2 redeployed with 1Gi (rollout finished, 3/3 pods ready). The service map "
        "now lists alpha-3 on port 8007; the old entry was removed.",
    ),
    (
        "Can you check the disk on the logging nodes? log-node-2 paged at 91% usage.",
        "log-node-2 is at 91% because logrotate failed on the audit logs since Tuesday. "
        "I compressed the backlog; usage is back to 58%.",
    ),
    (
        "Good. What's the state of the TLS certificates for the edge proxy? The renewal "
        "job was flaky last month.",
        "Certificates for the edge proxy expire in 41 days; the renewal job ran fine this "
        "morning. I added a check that pages at 14 days left.",
    ),
    (
        "alpha-4 is the search indexer on port 8004 and alpha-5 the notifier on port 8005, "
        "both unchanged since the migration.",
        "Recorded: alpha-4 (search indexer) on 8004, alpha-5 (notifier) on 8005, both "
        "untouched by the migration.",
    ),
    (
        "Port map for the new gateway, so we stop guessing: alpha-7 listens on port 8003 "
        "now, it was swapped with alpha-6 which took port 8006. Update the firewall rules.",
        "Done: alpha-7 now listens on 8003 and alpha-6 on 8006. The firewall rules for "
        "the gateway were updated and the old alpha-7 rule removed.",
    ),
    (
        "The CI pipeline for alpha-8 keeps timing out on the integration stage. Any idea?",
        "The integration stage of alpha-8 waits on a Postgres container that takes 90 s to "
        "start on the shared runners. I enabled the cached image; the stage now takes 40 s.",
    ),
    (
        "Nice. Let's schedule the database migration for alpha-9 on Thursday 02:00 UTC. "
        "It adds two indexes on the orders table.",
        "Scheduled for Thursday 02:00 UTC with a 30-minute window. The indexes are built "
        "concurrently so alpha-9 stays up; rollback drops them.",
    ),
    (
        "alpha-10 is the reporting API on port 8010. Finance complains the monthly report "
        "takes four minutes.",
        "The monthly report of alpha-10 does a full scan of the ledger table. A "
        "materialized view refreshed nightly would bring it under ten seconds.",
    ),
    (
        "Write that up as a ticket for the data team. Also who owns alpha-11?",
        "Ticket OPS-4412 filed for the data team. alpha-11 (the image resizer) is owned "
        "by the media team; their on-call is in the #media-ops channel.",
    ),
    (
        "alpha-11 runs on port 8009 and alpha-12 on port 8012. Both are on the new node pool.",
        "Recorded: alpha-11 on 8009 and alpha-12 on 8012, both on the new node pool.",
    ),
    (
        "The staging copy alpha-17 is on port 8017 and the load-test box alpha-70 on port "
        "8070. Neither should be reachable from outside.",
        "Checked: alpha-17 (8017) and alpha-70 (8070) are only reachable from the VPN "
        "range; the external security group has no rule for them.",
    ),
    (
        "We had a 5xx spike at 14:20 on the edge proxy. Was it one service?",
        "The spike came from alpha-8: a bad config push set its upstream timeout to 1 s. "
        "Reverted at 14:31; errors went back to baseline.",
    ),
    (
        "Add a config lint to the deploy pipeline so timeouts below 5 s are rejected.",
        "Added the lint rule to the shared deploy pipeline; it rejects upstream timeouts "
        "below 5 s and prints the offending file and line.",
    ),
    (
        "How much headroom do we have on the ops-east cluster after the node pool change?",
        "CPU requests are at 62% and memory at 71% of allocatable. We can absorb one node "
        "failure without evictions.",
    ),
    (
        "alpha-6 logs are full of connection refused errors to the cache. Can you look?",
        "alpha-6 still pointed at the old Redis endpoint. I updated the secret and "
        "restarted it; the errors stopped.",
    ),
    (
        "What about backups for alpha-9's database? Are they tested?",
        "Nightly snapshots are kept for 14 days. The last restore test was 3 weeks ago and "
        "took 22 minutes; I scheduled the next one for Monday.",
    ),
    (
        "Send the weekly cost report to finance, broken down per service.",
        "Sent. The alpha fleet cost 18,420 USD this week; alpha-10 and alpha-2 are the two "
        "largest lines because of the report scans and the invoice batch.",
    ),
    (
        "The security scan flagged an outdated OpenSSL in the base image. Which services use it?",
        "Seven services use the old base image: alpha-1, alpha-3, alpha-4, alpha-5, "
        "alpha-8, alpha-10 and alpha-12. A rebuilt image is in the registry.",
    ),
    (
        "Roll the new base image out gradually, one service per hour, starting with the "
        "least critical.",
        "Rollout plan: alpha-5, alpha-4, alpha-12, alpha-10, alpha-3, alpha-8, then "
        "alpha-1 last. Each step waits for green health checks.",
    ),
    (
        "alpha-5 and alpha-4 are done. Any errors so far?",
        "No errors: both passed their health checks and the error rate stayed flat. "
        "alpha-12 is rolling now.",
    ),
    (
        "Pause the rollout, the product team has a demo at 16:00 on alpha-10.",
        "Paused after alpha-12. The rollout resumes with alpha-10 after the demo.",
    ),
    (
        "Demo is over, resume. Also remind me what the rate limit on the edge proxy is.",
        "Resumed. The edge proxy allows 300 requests per second per client with bursts of "
        "600; the limit lives in the proxy's global config.",
    ),
    (
        "The rollout is finished? Give me a one-line status per service.",
        "Finished. All seven services run the new base image; health checks are green and "
        "no restarts were needed.",
    ),
    (
        "Latency on alpha-1 went up after the image change, p95 from 40 to 65 ms.",
        "The new image enables a stricter cipher list, and alpha-1 renegotiates TLS with "
        "the session store. Enabling session resumption brings p95 back to 42 ms.",
    ),
    (
        "Enable it. Then check whether the proxy's access logs still ship to the archive.",
        "Enabled on alpha-1. The access logs ship to the archive; the last batch landed "
        "four minutes ago.",
    ),
    (
        "Someone asked if we can expose alpha-12 publicly for a partner. Thoughts?",
        "Possible through the edge proxy with a partner API key and its own rate limit. "
        "I'd keep alpha-12 off the public security group and route only via the proxy.",
    ),
    (
        "Let's do that next sprint. For now document the proxy routes we have.",
        "Documented the twelve proxy routes with their upstream service, timeout and rate "
        "limit in the runbook.",
    ),
    (
        "A pod of alpha-3 was evicted twice today. Why?",
        "The node it landed on ran out of ephemeral storage: alpha-3 writes temporary "
        "thumbnails to local disk. I set an ephemeral storage request of 2Gi.",
    ),
    (
        "Were any ports changed during the evictions?",
        "No. The evicted pods came back with the same service definitions; only the pod "
        "addresses changed, which the proxy follows through service discovery.",
    ),
    (
        "Please double check the firewall rules against the service map, all ports.",
        "The rules match the service map for every public service. Two stale rules for "
        "ports 8013 and 8014, left from retired services, were removed.",
    ),
    (
        "Good catch. Any open items before the handoff?",
        "Open: the alpha-9 restore test on Monday, the alpha-10 materialized view ticket "
        "OPS-4412, and the partner route for alpha-12 next sprint.",
    ),
    (
        "The database migration for alpha-9 ran last night. Result?",
        "It completed in 11 minutes with no errors; both indexes are valid and the slow "
        "order lookups dropped from 800 ms to 35 ms.",
    ),
    (
        "alpha-2 crashed again this morning, same exit code.",
        "Not the same cause this time: exit code 137 came from a liveness probe that "
        "timed out during a long batch. I raised the probe timeout to 10 s.",
    ),
    (
        "Which services listen on ports above 8010 now? Need it for the new network policy.",
        "Above 8010: alpha-1 on 8011 and alpha-12 on 8012; the staging and load-test boxes "
        "(8017, 8070) are VPN-only and not part of the policy.",
    ),
    (
        "And the ones on 8004 through 8006?",
        "alpha-4 on 8004, alpha-5 on 8005 and alpha-6 on 8006.",
    ),
    (
        "Draft the network policy so only the edge proxy can reach those ports.",
        "Drafted: an ingress policy per namespace allowing traffic from the edge proxy's "
        "pods only, on each service's port; everything else is denied.",
    ),
    (
        "Apply it to staging first and run the smoke tests.",
        "Applied on staging; all smoke tests passed and no legitimate traffic was dropped.",
    ),
]

QUESTION = "What was the port of alpha-7?"
# Messages that give alpha-7's port; nothing else in the history does.
ANSWER = (14, 15)


def _status(turn: int) -> str:
    """What an on-call assistant pastes under its answer: the deployments it looked at."""
    names = sorted({(turn * 5 + k * 7) % 12 + 1 for k in range(4)})
    rows = [
        f"alpha-{n:<4} {3 - (n + turn) % 2}/3     3            {3 - (n + turn) % 2}"
        f"           {(n * 3 + turn) % 40 + 2}d"
        for n in names
    ]
    head = "NAME       READY   UP-TO-DATE   AVAILABLE   AGE"
    listed = " ".join(f"alpha-{n}" for n in names)
    events = (
        f"{(turn * 7) % 60:02d}m  Normal  Pulled   image alpha-base:2026.{turn % 12 + 1} "
        "already present",
        f"{(turn * 3) % 60:02d}m  Normal  Started  container app",
    )
    return (
        f"\n\n$ kubectl -n alpha get deploy {listed}\n{head}\n"
        + "\n".join(rows)
        + "\n\n$ kubectl -n alpha get events --sort-by=.lastTimestamp | tail -2\n"
        + "\n".join(events)
    )


def ops_chat() -> list[dict[str, str]]:
    """The history: 80 messages, user and assistant alternating."""
    out: list[dict[str, str]] = []
    for turn, (user, assistant) in enumerate(TURNS):
        out.append({"role": "user", "content": user})
        out.append({"role": "assistant", "content": assistant + _status(turn)})
    assert len(out) == 80
    return out
