"""Problem details for every error, body limits, OpenAPI, health check, HTML error pages."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from partners.models import Partner
from tests.factories import bearer, staff_token


@pytest.fixture
def admin(app):
    return bearer(staff_token("admin"))


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/problem+json"
    body = response.json
    assert body["status"] == status and body["title"] and body["type"]
    return body


def test_malformed_json_is_a_400_problem(client, admin):
    response = client.post("/api/v1/partners", data="{not json", headers=admin,
                           content_type="application/json")
    assert_problem(response, 400)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"code": "SHOP", "name": "Shop", "surprise": 1}, "surprise"),
        ({"code": "SHOP"}, "name"),
        ({"code": "SHOP", "name": 12}, "name"),
        ({"code": "SHOP", "name": "Shop", "sla_days": "soon"}, "sla_days"),
        ({"code": "SHOP", "name": "Shop", "sla_days": 0}, "sla_days"),
        ({"code": "'; DROP TABLE partners; --", "name": "x"}, "code"),
        ({"code": "SHOP", "name": "Shop", "country": "Sweden"}, "country"),
    ],
)
def test_invalid_fields_are_named_in_a_422_problem(client, admin, body, field):
    problem = assert_problem(client.post("/api/v1/partners", json=body, headers=admin), 422)
    assert field in problem["errors"]
    assert select(func.count(Partner.id)) is not None
    from common.extensions import db

    assert db.session.scalar(select(func.count(Partner.id))) == 0, "nothing half-written"


def test_a_json_array_body_is_refused(client, admin):
    problem = assert_problem(client.post("/api/v1/partners", json=[1, 2], headers=admin), 422)
    assert problem["errors"]


def test_html_in_fields_is_stored_verbatim_and_returned_as_json_text(client, admin):
    name = "<script>alert(1)</script>"
    created = client.post("/api/v1/partners", json={"code": "XSS", "name": name}, headers=admin)
    assert created.status_code == 201 and created.json["name"] == name
    assert created.headers["Content-Type"] == "application/json"


def test_oversized_bodies_are_refused_with_413(make_app):
    app = make_app(MAX_CONTENT_LENGTH=1000)
    with app.app_context():
        headers = bearer(staff_token("admin"))
    response = app.test_client().post("/api/v1/partners", headers=headers,
                                      json={"code": "BIG", "name": "x" * 5000})
    assert_problem(response, 413)


def test_unknown_api_paths_and_methods_are_problems(client, admin):
    assert_problem(client.get("/api/v1/nothing-here", headers=admin), 404)
    problem = assert_problem(client.put("/api/v1/partners", headers=admin), 405)
    assert problem["title"] == "Method Not Allowed"


def test_domain_errors_carry_their_own_type(client, admin):
    problem = assert_problem(client.get("/api/v1/partners/NOPE", headers=admin), 404)
    assert problem["type"].endswith("/partner-not-found")
    assert problem["request_id"]


def test_html_pages_get_a_friendly_error_page(client):
    response = client.get("/no-such-page", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert b"Back to the start page" in response.data
    assert response.headers["Content-Type"].startswith("text/html")


def test_pagination_reports_totals(client, admin):
    for i in range(3):
        client.post("/api/v1/partners", json={"code": f"P{i}", "name": f"P{i}"}, headers=admin)
    page = client.get("/api/v1/partners?page=2&page_size=2", headers=admin)
    assert [p["code"] for p in page.json] == ["P2"]
    assert '"total": 3' in page.headers["X-Pagination"]
    assert_problem(client.get("/api/v1/partners?page=0", headers=admin), 422)


def test_openapi_document_describes_the_api(client):
    spec = client.get("/api/openapi.json").json
    assert spec["openapi"].startswith("3.")
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "Problem" in spec["components"]["schemas"]
    operation = spec["paths"]["/api/v1/partners"]["post"]
    assert operation["security"] == [{"bearer": []}]
    assert {"401", "403", "422"} <= set(operation["responses"])
    assert client.get("/api/docs").status_code == 200


def test_health_check_reports_database_and_queue(client):
    body = client.get("/healthz").json
    assert body["status"] == "ok"
    assert body["database"]["ok"] and body["queue"] == {"ok": True, "mode": "inline"}
    assert body["outbox"]["pending"] == 0


def test_health_check_is_503_when_redis_is_unreachable(make_app):
    app = make_app(REDIS_URL="redis://127.0.0.1:1/0")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["queue"]["ok"] is False


def test_request_id_is_echoed_or_generated(client):
    assert client.get("/healthz", headers={"X-Request-ID": "abc-12345"}).headers[
        "X-Request-ID"] == "abc-12345"
    generated = client.get("/healthz", headers={"X-Request-ID": "bad id;"}).headers["X-Request-ID"]
    assert generated != "bad id;" and len(generated) == 32


def test_product_detail_with_its_bom_and_release_date(client, admin):
    from catalog.importing import run_import
    from tests.factories import TEST_ACTOR, csv_bytes, load_catalog

    load_catalog()
    run_import("products", csv_bytes("sku,name,category,warranty_months,released_on",
                                     "NEW-1,New One,phone,24,2024-02-01"), actor=TEST_ACTOR)
    run_import("bom", csv_bytes("sku,part_number,max_qty", "NEW-1,MB-1,1"), actor=TEST_ACTOR)
    body = client.get("/api/v1/products/new-1", headers=admin).json
    assert body["released_on"] == "2024-02-01"
    assert body["bom"] == [{"part_number": "MB-1", "description": "Main board",
                            "unit_cost": "120.00", "max_qty": 1}]


def test_absurd_numbers_are_client_errors_not_500(client, admin):
    assert client.delete("/api/v1/me/tokens/703901784478519263232",
                         headers=admin).status_code == 404
    page = client.get("/api/v1/partners?page=1065561592614867042304", headers=admin)
    assert page.status_code == 200 and page.json == []
