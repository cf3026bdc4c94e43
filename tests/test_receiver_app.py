"""The app factory: JSON errors everywhere."""

from receiver import create_app


def test_unknown_route_is_json_404(settings):
    """An unknown path answers Metriport-style JSON, not an HTML page."""
    client = create_app(settings).test_client()
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"
