from tests.factories import bearer, staff_token


def test_front_page_renders(client):
    response = client.get("/")
    assert response.status_code == 200
    assert b"Aftercare" in response.data


def test_me_reports_the_bearer(client):
    token = staff_token("support")
    response = client.get("/api/v1/me", headers=bearer(token))
    assert response.status_code == 200
    assert response.json["role"] == "support"
