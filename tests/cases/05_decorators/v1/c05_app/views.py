"""Views."""

from c05_app.web import require_token, route, tag_response


@route("/files")
@require_token
@tag_response
def download(req):
    return {"status": 200, "file": "/srv/files/" + req["name"]}


@route("/health")
def health(req):
    return {"status": 200}
