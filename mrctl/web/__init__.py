"""`mrctl ui`: a web page over the run history and the runs going on now (issue 15.3).

    (which runs and clusters exist now, and how to reach their Redis: mrctl.backends.discovery)
    feed     a running job's live snapshots as server-sent events
    actions  cancel, kill a worker, remove a cluster
    pages    HTML as pure functions of plain data (one template, one small script)
    gate     the session token every request needs (in the printed URL, then a cookie)
    app      the routes
    server   uvicorn on 127.0.0.1 only: in the foreground, or in a thread of `mrctl run --ui`
"""
