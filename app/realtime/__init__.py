"""Real time: events recorded durably and applied at once, items upserted, versions swapped.

    live_store    the live LanceDB database beside the versions (`<db_path>/live/`), fsync
    event_log     the durable event log: group commit, sequence numbers, compaction, replay
    intake        per-event validation, weights and the per-user rate limit
    overlay       each user's live events laid over their batch profile (UserState)
    fold_in       the CF vector refolded against the version's fixed item factors
    trending      decayed distinct-user counts that a few accounts cannot inflate
    item_upserts  items embedded online, kept live, applied to the serving version
    feed          what replicas share through Redis: the event feed, sequence numbers, the
                  pinned serving version (in memory and a no-op for one process)
    live          the whole of it, as the engine uses it

Importing this package has no side effects; the engine opens `Live` in the server's lifespan.
"""
