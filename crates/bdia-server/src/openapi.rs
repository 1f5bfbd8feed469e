//! The OpenAPI 3 document of the whole API, served at `/openapi.json`.
//!
//! Written by hand next to the router; a test checks that every route of
//! [`crate::ROUTES`] is described here.

use serde_json::{json, Value};

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

fn auth_errors() -> Value {
    json!({
        "401": error_response("Missing, expired, forged or unknown token; x-api-key not the token's client"),
        "403": error_response("Client disabled"),
        "500": error_response("Internal error (no detail)")
    })
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

fn multipart_body() -> Value {
    json!({
        "required": true,
        "content": { "multipart/form-data": { "schema": {
            "type": "object",
            "required": ["file"],
            "properties": { "file": {
                "type": "string", "format": "binary",
                "description": "gzip-compressed CSV batch file; filename and part Content-Type optional"
            } }
        } } }
    })
}

fn json_ok(description: &str, schema: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
    })
}

fn header_param(name: &str, required: bool, description: &str) -> Value {
    json!({ "name": name, "in": "header", "required": required,
            "schema": { "type": "string" }, "description": description })
}

fn form_body(required: &[&str], props: Value) -> Value {
    json!({
        "required": true,
        "content": { "application/x-www-form-urlencoded": { "schema": {
            "type": "object", "required": required, "properties": props
        } } }
    })
}

/// The document.
pub fn document() -> Value {
    let security = json!([{ "bearer": [], "apiKey": [] }]);
    let api_key = header_param("x-api-key", true, "Client id; must be the token's client");
    let mut doc = json!({
        "openapi": "3.0.3",
        "info": {
            "title": "bdia: Bulk Data Insertion API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Wire-compatible Bulk Data Insertion service. Every body is JSON; errors are {\"error\": \"...\"}."
        },
        "paths": {
            "/ims/token/v3": { "post": {
                "summary": "Access token from client credentials",
                "requestBody": form_body(&["grant_type", "client_id", "client_secret"], json!({
                    "grant_type": { "type": "string", "enum": ["client_credentials"] },
                    "client_id": { "type": "string" },
                    "client_secret": { "type": "string" },
                    "scope": { "type": "string", "description": "accepted and ignored" }
                })),
                "responses": {
                    "200": json_ok("Access token", "AccessToken"),
                    "400": error_response("Missing field or unsupported grant_type"),
                    "401": error_response("Invalid client credentials"),
                    "403": error_response("Client disabled")
                }
            } },
            "/ims/exchange/jwt": { "post": {
                "summary": "Access token from a service-account JWT (RS256, signed with the client's registered key; exp, iss = company, sub = technical account, aud naming the client)",
                "requestBody": form_body(&["client_id", "client_secret", "jwt_token"], json!({
                    "client_id": { "type": "string" },
                    "client_secret": { "type": "string" },
                    "jwt_token": { "type": "string" }
                })),
                "responses": {
                    "200": json_ok("Access token", "AccessToken"),
                    "400": error_response("Missing field"),
                    "401": error_response("Invalid credentials or JWT"),
                    "403": error_response("Client disabled")
                }
            } },
            "/aa/collect/v1/events": {
                "post": {
                    "summary": "Upload one batch file",
                    "security": security,
                    "parameters": [
                        api_key,
                        header_param("x-adobe-vgid", true, "Visitor group id"),
                        header_param("x-adobe-idempotency-key", false, "Idempotency key, scoped to the company")
                    ],
                    "requestBody": multipart_body(),
                    "responses": merge(json!({
                        "200": json_ok("The file record (UPLOADED or REJECTED), or the original record for a known idempotency key", "FileRecord"),
                        "400": error_response("Missing header, missing or duplicate file part, malformed upload"),
                        "413": error_response("Over the compressed or decompressed size limit; nothing stored"),
                        "429": { "description": "Over the upload rate limit",
                                 "headers": { "Retry-After": { "schema": { "type": "integer" } } },
                                 "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
                    }), auth_errors())
                },
                "get": {
                    "summary": "List the caller's files, newest first",
                    "security": security,
                    "parameters": [
                        api_key,
                        { "name": "vgid", "in": "query", "schema": { "type": "string" } },
                        { "name": "status", "in": "query", "schema": { "$ref": "#/components/schemas/Status" } },
                        { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000, "default": 100 } },
                        { "name": "cursor", "in": "query", "schema": { "type": "string" } }
                    ],
                    "responses": merge(json!({
                        "200": json_ok("A page of files", "FileList"),
                        "400": error_response("Bad status, limit or cursor")
                    }), auth_errors())
                }
            },
            "/aa/collect/v1/events/validate": { "post": {
                "summary": "Check a file; nothing is stored",
                "security": security,
                "parameters": [api_key, header_param("x-adobe-vgid", false, "Accepted and ignored")],
                "requestBody": multipart_body(),
                "responses": merge(json!({
                    "200": { "description": "Valid", "content": { "application/json": { "schema": {
                        "type": "object", "properties": {
                            "success": { "type": "string", "example": "File is valid" },
                            "size": { "type": "integer" }, "rows": { "type": "integer" },
                            "invalid_rows": { "type": "integer" },
                            "status_code": { "type": "string", "enum": ["UPLOADED", "REJECTED"] },
                            "processing_log": { "type": "string" } } } } } },
                    "400": error_response("Invalid rows or a file-level problem"),
                    "413": error_response("Over the size limits")
                }), auth_errors())
            } },
            "/aa/collect/v1/events/key/{idempotency_key}": { "get": {
                "summary": "The file an idempotency key points to",
                "security": security,
                "parameters": [api_key, { "name": "idempotency_key", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": merge(json!({
                    "200": json_ok("The file record", "FileRecord"),
                    "404": error_response("File not found")
                }), auth_errors())
            } },
            "/aa/collect/v1/events/{file_id}": { "get": {
                "summary": "One file record, with processing dates and log",
                "security": security,
                "parameters": [api_key, { "name": "file_id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": merge(json!({
                    "200": json_ok("The file record", "FileRecord"),
                    "404": error_response("File not found")
                }), auth_errors())
            } },
            "/api/v1/report-suites": { "get": {
                "summary": "The caller's company's report suites, with their time zones",
                "security": security,
                "parameters": [api_key],
                "responses": merge(json!({
                    "200": json_ok("Report suites", "ReportSuites")
                }), auth_errors())
            } },
            "/api/v1/report-suites/{rsid}/report": { "get": {
                "summary": "A report over the suite's processed hits: metrics by one dimension over a date range",
                "description": "Days and hours are in the suite's time zone. visits: by day/hour, visits whose first hit is in the row; otherwise distinct visits with a hit in the row. visitors: distinct visitors in the row. bounces: visits with one hit. events:<name>: each occurrence adds its value, or 1. totals cover the whole range (not only the rows returned). Rows by day/hour are in time order (every day of the range for day); otherwise by the first metric, descending.",
                "security": security,
                "parameters": [api_key,
                    { "name": "rsid", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "metrics", "in": "query", "required": true, "schema": { "type": "string" },
                      "description": "Comma separated: pageviews, visits, visitors, link_hits, hits, bounces, events:<name> (at most 20)" },
                    { "name": "dimension", "in": "query", "schema": { "type": "string", "default": "day" },
                      "description": "day, hour, page, page_url, link_name, link_type, channel, campaign, referrer_host, evar1..evar250, prop1..prop75, visitor_id_type, file_id" },
                    { "name": "from", "in": "query", "required": true, "schema": { "type": "string", "format": "date" } },
                    { "name": "to", "in": "query", "required": true, "schema": { "type": "string", "format": "date" },
                      "description": "Included; at most 731 days after from" },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 10000 },
                      "description": "Rows returned; default 100 (every row for day and hour)" }],
                "responses": merge(json!({
                    "200": json_ok("The report", "Report"),
                    "400": error_response("Unknown metric or dimension, malformed date, bad range or limit"),
                    "404": error_response("Report suite not found (unknown, or another company's)")
                }), auth_errors())
            } },
            "/api/v1/groups": { "get": {
                "summary": "Visitor groups: queued files, file in progress, last completed file and its rows per second",
                "security": security,
                "parameters": [api_key],
                "responses": merge(json!({
                    "200": json_ok("Groups", "Groups")
                }), auth_errors())
            } },
            "/healthz": { "get": { "summary": "Liveness", "responses": { "200": { "description": "Up" } } } },
            "/readyz": { "get": { "summary": "Readiness (database and blob store)", "responses": {
                "200": { "description": "Ready" }, "503": error_response("Not ready") } } },
            "/metrics": { "get": { "summary": "Prometheus metrics", "responses": {
                "200": { "description": "Prometheus text format", "content": { "text/plain": { "schema": { "type": "string" } } } } } } },
            "/openapi.json": { "get": { "summary": "This document", "responses": { "200": { "description": "OpenAPI 3 document" } } } }
        },
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" },
                "apiKey": { "type": "apiKey", "in": "header", "name": "x-api-key" }
            },
            "schemas": {
                "Error": { "type": "object", "required": ["error"], "properties": { "error": { "type": "string" } } },
                "ReportSuites": { "type": "object", "properties": { "report_suites": { "type": "array", "items": {
                    "type": "object", "properties": {
                        "rsid": { "type": "string" },
                        "time_zone": { "type": "string", "description": "IANA name" } } } } } },
                "Groups": { "type": "object", "properties": { "groups": { "type": "array", "items": {
                    "$ref": "#/components/schemas/Group" } } } },
                "Group": { "type": "object", "properties": {
                    "visitor_group_id": { "type": "string" },
                    "queued": { "type": "integer" },
                    "in_progress": { "type": "string", "nullable": true },
                    "errors": { "type": "integer" },
                    "last_completed": { "type": "string", "nullable": true },
                    "last_completed_date": { "type": "integer", "nullable": true },
                    "rows_per_second": { "type": "number", "nullable": true },
                    "files": { "type": "integer" } } },
                "Report": { "type": "object", "properties": {
                    "report_suite": { "type": "string" },
                    "dimension": { "type": "string" },
                    "from": { "type": "string", "format": "date" },
                    "to": { "type": "string", "format": "date" },
                    "rows": { "type": "array", "items": { "type": "object",
                        "description": "The dimension's value (null when hits have none) under the dimension's name, then one number per metric under its name",
                        "additionalProperties": true } },
                    "totals": { "type": "object", "additionalProperties": { "type": "number" } } } },

                "AccessToken": { "type": "object", "properties": {
                    "access_token": { "type": "string" },
                    "token_type": { "type": "string", "enum": ["bearer"] },
                    "expires_in": { "type": "integer", "description": "seconds" } } },
                "Status": { "type": "string", "enum": ["UPLOADED", "REJECTED", "PROCESSING", "COMPLETE", "ERROR"] },
                "FileRecord": { "type": "object", "properties": {
                    "file_id": { "type": "string" },
                    "visitor_group_id": { "type": "string" },
                    "size": { "type": "integer", "description": "compressed bytes" },
                    "uncompressed_size": { "type": "integer" },
                    "received_date": { "type": "integer", "description": "unix seconds" },
                    "rows": { "type": "integer" },
                    "invalid_rows": { "type": "integer" },
                    "upload_name": { "type": "string" },
                    "status": { "type": "string" },
                    "status_code": { "$ref": "#/components/schemas/Status" },
                    "processing_log": { "type": "string" },
                    "idempotency_key": { "type": "string" },
                    "error": { "type": "string", "description": "REJECTED/ERROR only" },
                    "processing_start_date": { "type": "integer", "nullable": true },
                    "file_reader_complete_date": { "type": "integer", "nullable": true },
                    "processing_end_date": { "type": "integer", "nullable": true } } },
                "FileList": { "type": "object", "properties": {
                    "files": { "type": "array", "items": { "$ref": "#/components/schemas/FileRecord" } },
                    "next_cursor": { "type": "string", "nullable": true } } }
            }
        }
    });
    processing_paths(&mut doc, &security, &api_key);
    doc
}

/// The processing stage's endpoints (reject report, group retry).
fn processing_paths(doc: &mut Value, security: &Value, api_key: &Value) {
    let paths = json!({
        "/aa/collect/v1/events/{file_id}/rejects": { "get": {
            "summary": "The file's reject report: every invalid row (row, kind, message, raw) as CSV",
            "security": security,
            "parameters": [api_key, { "name": "file_id", "in": "path", "required": true, "schema": { "type": "string" } }],
            "responses": merge(json!({
                "200": { "description": "CSV with a header row", "content": { "text/csv": { "schema": { "type": "string" } } } },
                "404": error_response("File not found")
            }), auth_errors())
        } },
        "/aa/collect/v1/groups/{vgid}/retry": { "post": {
            "summary": "Restarts a visitor group stopped by a failed (ERROR) file",
            "security": security,
            "parameters": [api_key, { "name": "vgid", "in": "path", "required": true, "schema": { "type": "string" } }],
            "responses": merge(json!({
                "200": { "description": "Files moved back to UPLOADED", "content": { "application/json": { "schema": {
                    "type": "object", "properties": {
                        "visitor_group_id": { "type": "string" },
                        "retried": { "type": "integer" } } } } } }
            }), auth_errors())
        } }
    });
    if let (Some(all), Some(add)) = (doc["paths"].as_object_mut(), paths.as_object()) {
        for (k, v) in add {
            all.insert(k.clone(), v.clone());
        }
    }
}
