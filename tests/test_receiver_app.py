"""The app factory: JSON errors everywhere."""



def test_unknown_route_is_json_404(client):
    """An unknown path answers Metriport-style JSON, not an HTML page."""
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"
