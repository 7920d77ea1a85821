"""Views."""

from c05_app.web import require_token, route, tag_response


@route("/files")
@require_token
@tag_response
def download(req):
    name = req["name"]
    if "/" in name or name.startswith("."):
        return {"status": 400}
    return {"status": 200, "file": "/srv/files/" + name}


@route("/health")
def health(req):
    return {"status": 200}
