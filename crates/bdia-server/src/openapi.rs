//! The OpenAPI 3 document of the whole API, served at `/openapi.json`.
//!
//! Written by hand next to the router; a test checks that every route of
//! [`crate::ROUTES`] is described here, and the tests below check every
//! body schema against its [`bdia_wire`] type: the property names, the
//! `required` list and the nullable properties are exactly what the type
//! serializes, so a field added to a body without being documented here
//! fails a test.

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

/// [`auth_errors`] and the answers of bounded work (`crate::admission`):
/// 429 for the company's limits (`why`), 503 for the server's, both with
/// `Retry-After`.
fn busy_errors(why: &str) -> Value {
    let retry = |description: &str| {
        json!({ "description": description,
                "headers": { "Retry-After": { "schema": { "type": "integer" } } },
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
    };
    merge(
        json!({
            "429": retry(why),
            "503": retry("The server's limit of this work in progress, time or memory; retry later")
        }),
        auth_errors(),
    )
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
                    "403": error_response("Client disabled"),
                    "429": error_response("Too many failed attempts for this client id (Retry-After)")
                }
            } },
            "/ims/exchange/jwt": { "post": {
                "summary": "Access token from a service-account JWT (RS256, signed with the client's registered key; exp, iat, iss = company, sub = technical account, aud naming the client; each JWT exchanged once)",
                "requestBody": form_body(&["client_id", "client_secret", "jwt_token"], json!({
                    "client_id": { "type": "string" },
                    "client_secret": { "type": "string" },
                    "jwt_token": { "type": "string" }
                })),
                "responses": {
                    "200": json_ok("Access token", "AccessToken"),
                    "400": error_response("Missing field"),
                    "401": error_response("Invalid credentials or JWT (bad signature or names, expired, nbf or iat in the future, no iat, lifetime over the maximum, already exchanged)"),
                    "403": error_response("Client disabled"),
                    "429": error_response("Too many failed attempts for this client id (Retry-After)")
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
                        "408": error_response("The body arrived too slowly (upload_deadline_secs, upload_min_bytes_per_sec); nothing stored"),
                        "413": error_response("Over the compressed or decompressed size limit; nothing stored"),
                        "507": error_response("The server's disk is full; nothing stored (Retry-After)"),
                    }), busy_errors("Over the upload rate limit, or the company's passes in progress"))
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
                "parameters": [api_key, header_param("x-adobe-vgid", false, "Accepted and ignored"),
                    { "name": "preview", "in": "query", "required": false, "schema": { "type": "boolean" },
                      "description": "Also answer what the file would do (time range, rows per suite and day, visitors, new visitors, out-of-order rows, estimated processing time); nothing is stored" }],
                "requestBody": multipart_body(),
                "responses": merge(json!({
                    "200": json_ok("Valid", "Validation"),
                    "400": { "description": "Invalid rows or a file-level problem (the check's answer, with error), or a malformed request (error only)",
                             "content": { "application/json": { "schema": { "anyOf": [
                                 { "$ref": "#/components/schemas/Validation" }, { "$ref": "#/components/schemas/Error" } ] } } } },
                    "408": error_response("The body arrived too slowly (upload_deadline_secs, upload_min_bytes_per_sec)"),
                    "413": error_response("Over the size limits")
                }), busy_errors("Over the validate rate limit, or the company's passes in progress"))
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
                "description": "Days and hours are in the suite's time zone. visits: by day/hour, visits whose first hit is in the row; otherwise distinct visits with a hit in the row. visitors: distinct visitors in the row. bounces: visits with one hit. entries: visits whose first hit is in the row. bounce_rate: bounces / entries. total_seconds_spent: seconds from each hit to the next hit of its visit. time_spent_per_visit: total_seconds_spent / (visits - bounces). events:<name>: each occurrence that counts adds its value, or 1 (a serialized event once per ID). revenue, orders, units: of counted purchases (a repeated purchaseID is not counted again). conversion_rate: orders / visits. evarN: the persisted value (the eVar's expiration and allocation). product, category: one row per product of a hit; revenue and units are the product's. Robots' hits (device_type bot) are left out unless include_bots=true. totals cover the whole range (not only the rows returned). Rows by day/hour are in time order (every day of the range for day); otherwise by the first metric, descending.",
                "security": security,
                "parameters": [api_key,
                    { "name": "rsid", "in": "path", "required": true,
                      "description": "One of the caller's company's report suites (IDs are per company)",
                      "schema": { "type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$" } },
                    { "name": "metrics", "in": "query", "required": true, "schema": { "type": "string" },
                      "description": "Comma separated: pageviews, visits, visitors, link_hits, hits, bounces, entries, bounce_rate, total_seconds_spent, time_spent_per_visit, revenue, orders, units, conversion_rate, events:<name> (at most 20)" },
                    { "name": "dimension", "in": "query", "schema": { "type": "string", "default": "day" },
                      "description": "day, hour, page, page_url, link_name, link_type, channel, campaign, referrer_host, evar1..evar250, prop1..prop75, visitor_id_type, file_id, browser, browser_version, os, device_type, referrer_type, search_engine, entry_page, exit_page, product, category" },
                    { "name": "from", "in": "query", "required": true, "schema": { "type": "string", "format": "date" } },
                    { "name": "to", "in": "query", "required": true, "schema": { "type": "string", "format": "date" },
                      "description": "Included; at most 731 days after from" },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 10000 },
                      "description": "Rows returned; default 100 (every row for day and hour)" },
                    { "name": "include_bots", "in": "query", "schema": { "type": "boolean", "default": false },
                      "description": "Count robots' hits (device_type bot, from the user agent); left out by default" }],
                "responses": merge(json!({
                    "200": json_ok("The report", "Report"),
                    "400": error_response("Malformed report suite id, unknown metric or dimension, malformed date, bad range, limit or include_bots"),
                    "404": error_response("Report suite not found: the caller's company has no suite of this ID (other companies' suites play no part)")
                }), busy_errors("Over the company's report rate limit"))
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
            "/readyz": { "get": { "summary": "Readiness (database, blob store, saturation)", "responses": {
                "200": json_ok("Ready", "Readiness"),
                "503": { "description": "Saturated (a Readiness body with status `saturated`) or not ready (an Error body)",
                    "content": { "application/json": { "schema": { "anyOf": [
                        { "$ref": "#/components/schemas/Readiness" }, { "$ref": "#/components/schemas/Error" } ] } } } } } } },
            "/metrics": { "get": { "summary": "Prometheus metrics (Authorization: Bearer <metrics_token>)", "responses": {
                "200": { "description": "Prometheus text format", "content": { "text/plain": { "schema": { "type": "string" } } } },
                "401": error_response("Missing or wrong metrics token"),
                "404": error_response("No metrics_token configured: not served on this listener") } } },
            "/openapi.json": { "get": { "summary": "This document", "responses": { "200": { "description": "OpenAPI 3 document" } } } }
        },
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" },
                "apiKey": { "type": "apiKey", "in": "header", "name": "x-api-key" }
            },
            "schemas": {
                "Error": { "type": "object", "required": ["error"], "properties": {
                    "error": { "type": "string" },
                    "code": { "type": "string", "description": "stable snake_case cause, on answers that have several (docs/API.md)" } } },
                "Usage": { "type": "object", "required": ["in_use", "limit"], "properties": {
                    "in_use": { "type": "integer" }, "limit": { "type": "integer" } } },
                "Readiness": { "type": "object", "required": ["status", "passes", "reports", "database_calls"], "properties": {
                    "status": { "type": "string", "enum": ["ready", "saturated"] },
                    "passes": { "$ref": "#/components/schemas/Usage" },
                    "reports": { "$ref": "#/components/schemas/Usage" },
                    "database_calls": { "type": "integer", "description": "database calls waiting or running" } } },
                "ReportSuites": { "type": "object", "required": ["report_suites"], "properties": { "report_suites": { "type": "array", "items": {
                    "$ref": "#/components/schemas/ReportSuite" } } } },
                "ReportSuite": { "type": "object", "required": ["rsid", "time_zone", "accept_single_hits", "internal_url_filters", "evar_settings"], "properties": {
                    "evar_settings": { "type": "array", "items": { "$ref": "#/components/schemas/EvarSetting" },
                        "description": "The eVars whose settings are not the defaults (expiration visit, allocation most_recent)" },
                    "internal_url_filters": { "type": "array", "items": { "type": "string" },
                        "description": "A referrer whose host contains one of these is internal; empty: only the hit's own page host" },
                    "rsid": { "type": "string" },
                    "time_zone": { "type": "string", "description": "IANA name" },
                    "accept_single_hits": { "type": "boolean", "description": "Takes hits from the single-hit Data Insertion API (/b/ss/...)" } } },
                "EvarSetting": { "type": "object", "required": ["evar", "expiration", "allocation"], "properties": {
                    "evar": { "type": "integer", "minimum": 1, "maximum": 250 },
                    "expiration": { "type": "string", "description": "hit, visit, never, day, week, month (31 days), quarter (93), year (365), <N>d, or event:<name>" },
                    "allocation": { "type": "string", "enum": ["most_recent", "original"] } } },
                "Groups": { "type": "object", "required": ["groups"], "properties": { "groups": { "type": "array", "items": {
                    "$ref": "#/components/schemas/Group" } } } },
                "Group": { "type": "object", "required": ["visitor_group_id", "queued", "in_progress", "errors",
                        "last_completed", "last_completed_date", "rows_per_second", "files"], "properties": {
                    "visitor_group_id": { "type": "string" },
                    "queued": { "type": "integer" },
                    "in_progress": { "type": "string", "nullable": true },
                    "errors": { "type": "integer" },
                    "last_completed": { "type": "string", "nullable": true },
                    "last_completed_date": { "type": "integer", "nullable": true },
                    "rows_per_second": { "type": "number", "nullable": true },
                    "files": { "type": "integer" } } },
                "Report": { "type": "object", "required": ["report_suite", "dimension", "from", "to", "rows", "totals"], "properties": {
                    "report_suite": { "type": "string" },
                    "dimension": { "type": "string" },
                    "from": { "type": "string", "format": "date" },
                    "to": { "type": "string", "format": "date" },
                    "rows": { "type": "array", "items": { "type": "object",
                        "description": "The dimension's value (null when hits have none) under the dimension's name, then one number per metric under its name",
                        "additionalProperties": true } },
                    "totals": { "type": "object", "additionalProperties": { "type": "number" } } } },

                "AccessToken": { "type": "object", "required": ["access_token", "token_type", "expires_in"], "properties": {
                    "access_token": { "type": "string" },
                    "token_type": { "type": "string", "enum": ["bearer"] },
                    "expires_in": { "type": "integer", "description": "seconds" } } },
                "Status": { "type": "string", "enum": ["UPLOADED", "REJECTED", "PROCESSING", "COMPLETE", "ERROR", "CANCELLED"] },
                "FileRecord": { "type": "object", "required": ["file_id", "visitor_group_id", "size", "uncompressed_size",
                        "received_date", "rows", "invalid_rows", "upload_name", "status", "status_code", "processing_log",
                        "idempotency_key", "processing_start_date", "file_reader_complete_date", "processing_end_date",
                        "rejects_kept"], "properties": {
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
                    "error": { "type": "string", "description": "REJECTED, ERROR and CANCELLED only" },
                    "processing_start_date": { "type": "integer", "nullable": true },
                    "file_reader_complete_date": { "type": "integer", "nullable": true },
                    "processing_end_date": { "type": "integer", "nullable": true },
                    "rejects_kept": { "type": "integer", "description": "invalid rows listed in the reject report, the first ones; fewer than invalid_rows when the report was capped (the rest are counted by kind at its end); 0 without a report" } } },
                "FileList": { "type": "object", "required": ["files", "next_cursor"], "properties": {
                    "files": { "type": "array", "items": { "$ref": "#/components/schemas/FileRecord" } },
                    "next_cursor": { "type": "string", "nullable": true } } },
                "Validation": { "type": "object",
                    "description": "200: success; 400: error. Both carry the counts and the processing log of the check.",
                    "required": ["invalid_rows", "processing_log", "rows", "size", "status_code"], "properties": {
                    "error": { "type": "string", "description": "400 only" },
                    "invalid_rows": { "type": "integer" },
                    "processing_log": { "type": "string" },
                    "rows": { "type": "integer" },
                    "size": { "type": "integer", "description": "compressed bytes" },
                    "status_code": { "type": "string", "enum": ["UPLOADED", "REJECTED"] },
                    "success": { "type": "string", "example": "File is valid", "description": "200 only" },
                    "preview": { "$ref": "#/components/schemas/Preview" } } },
                "Preview": { "type": "object",
                    "description": "What the file would do, over its valid rows (?preview=true)",
                    "required": ["rows_by_suite_day", "visitors", "new_visitors", "out_of_order_rows", "rows_queued", "estimate_basis"],
                    "properties": {
                    "first_hit_time": { "type": "string", "format": "date-time" },
                    "last_hit_time": { "type": "string", "format": "date-time" },
                    "rows_by_suite_day": { "type": "array", "items": { "type": "object",
                        "required": ["report_suite", "date", "rows"], "properties": {
                        "report_suite": { "type": "string" }, "date": { "type": "string", "format": "date" },
                        "rows": { "type": "integer" } } } },
                    "visitors": { "type": "integer" },
                    "new_visitors": { "type": "integer" },
                    "out_of_order_rows": { "type": "integer" },
                    "rows_queued": { "type": "integer" },
                    "rows_per_second": { "type": "number" },
                    "estimated_processing_secs": { "type": "number" },
                    "estimate_basis": { "type": "string" },
                    "duplicate_of": { "type": "string", "description": "an accepted file of the company with exactly these bytes" } } }
            }
        }
    });
    processing_paths(&mut doc, &security, &api_key);
    lake_paths(&mut doc, &security, &api_key);
    group_paths(&mut doc, &security, &api_key);
    webhook_paths(&mut doc, &security, &api_key);
    single_hit_paths(&mut doc, &security, &api_key);
    doc
}

/// Group control: the group view, pause, resume and cancel, and the queue
/// fields of a waiting file's record.
fn group_paths(doc: &mut Value, security: &Value, api_key: &Value) {
    let vgid =
        json!({ "name": "vgid", "in": "path", "required": true, "schema": { "type": "string" } });
    let action = |summary: &str| {
        json!({ "post": {
            "summary": summary,
            "description": "Idempotent: every call is recorded in the group's actions (actor: the API client id; at: unix seconds), also one that changes nothing. Answers the group after the action.",
            "security": security,
            "parameters": [api_key, vgid],
            "responses": merge(json!({
                "200": json_ok("The group after the action", "GroupView"),
                "400": error_response("Malformed visitor group id"),
                "404": error_response("A visitor group the company never used (no file, no earlier action)")
            }), auth_errors())
        } })
    };
    extend(
        doc,
        "/paths",
        json!({
            "/aa/collect/v1/groups/{vgid}": { "get": {
                "summary": "A visitor group: its state, waiting files and rows, the file in progress, the last error and the actions taken on it",
                "security": security,
                "parameters": [api_key, vgid],
                "responses": merge(json!({
                    "200": json_ok("The group", "GroupView"),
                    "400": error_response("Malformed visitor group id"),
                    "404": error_response("A visitor group the company never used")
                }), auth_errors())
            } },
            "/aa/collect/v1/groups/{vgid}/pause": action("Pause a visitor group: uploads are still accepted and stored, none starts processing; a file already processing finishes"),
            "/aa/collect/v1/groups/{vgid}/resume": action("Resume a paused visitor group"),
            "/aa/collect/v1/groups/{vgid}/cancel": action("Cancel a visitor group's waiting files: its UPLOADED files (and ERROR files, which hold the group stopped) become CANCELLED (error_code group_cancelled) and are never processed; the group becomes active, so later uploads are processed")
        }),
    );
    extend(
        doc,
        "/components/schemas",
        json!({
            "GroupState": { "type": "string", "enum": ["active", "paused"] },
            "GroupActionRecord": { "type": "object", "required": ["action", "actor", "at", "files"], "properties": {
                "action": { "type": "string", "enum": ["pause", "resume", "cancel"] },
                "actor": { "type": "string", "description": "the API client id, or admin (bdia admin)" },
                "at": { "type": "integer", "description": "unix seconds" },
                "files": { "type": "integer", "description": "files the action changed (cancelled files; 0 for pause and resume)" } } },
            "GroupError": { "type": "object", "required": ["file_id", "error", "error_code", "at"], "properties": {
                "file_id": { "type": "string" },
                "error": { "type": "string", "nullable": true },
                "error_code": { "type": "string", "nullable": true },
                "at": { "type": "integer", "nullable": true, "description": "unix seconds when it failed" } } },
            "GroupView": { "type": "object", "required": ["visitor_group_id", "state", "files_waiting", "rows_waiting",
                    "in_progress", "last_error", "actions"], "properties": {
                "visitor_group_id": { "type": "string" },
                "state": { "$ref": "#/components/schemas/GroupState" },
                "files_waiting": { "type": "integer", "description": "UPLOADED files" },
                "rows_waiting": { "type": "integer", "description": "rows of the UPLOADED files" },
                "in_progress": { "allOf": [{ "$ref": "#/components/schemas/FileRecord" }], "nullable": true, "description": "the PROCESSING file" },
                "last_error": { "allOf": [{ "$ref": "#/components/schemas/GroupError" }], "nullable": true, "description": "the latest ERROR file" },
                "actions": { "type": "array", "items": { "$ref": "#/components/schemas/GroupActionRecord" },
                    "description": "the latest 100 actions, oldest first" } } }
        }),
    );
    extend(
        doc,
        "/components/schemas/FileRecord/properties",
        json!({
            "files_ahead": { "type": "integer", "description": "UPLOADED only: files of the group processed before this one (the PROCESSING one and the UPLOADED ones accepted earlier)" },
            "rows_ahead": { "type": "integer", "description": "UPLOADED only: rows of those files" },
            "estimated_start": { "type": "string", "format": "date-time", "nullable": true,
                "description": "UPLOADED only: now + rows_ahead / rate (see docs/API.md); null when the group is paused or stopped, or no rate is known" },
            "estimated_finish": { "type": "string", "format": "date-time", "nullable": true,
                "description": "UPLOADED only: now + (rows_ahead + rows) / rate; null as estimated_start" },
            "queue_state": { "type": "string", "enum": ["waiting", "paused", "stopped"],
                "description": "UPLOADED only: waiting (the group runs), paused, or stopped (an ERROR file holds the group)" }
        }),
    );
}

/// Inserts `add`'s entries into the object at `at` of `doc`.
fn extend(doc: &mut Value, at: &str, add: Value) {
    if let (Some(all), Value::Object(add)) =
        (doc.pointer_mut(at).and_then(Value::as_object_mut), add)
    {
        all.extend(add);
    }
}

/// Retraction and privacy deletion: the routes, their bodies, and the
/// retraction fields of the file record.
fn lake_paths(doc: &mut Value, security: &Value, api_key: &Value) {
    let storage_full =
        error_response("The server's disk is full; nothing was removed (Retry-After)");
    extend(
        doc,
        "/paths",
        json!({
            "/aa/collect/v1/events/{file_id}/hits": { "delete": {
                "summary": "Retract a COMPLETE file's hits: every hit of the file leaves the lake in one commit; reports no longer count them",
                "description": "Answers the file record, which then carries hits_retracted_at and hits_retracted, and a log line. Retracting again changes nothing and answers the same record. Visitor state is not rewound: visits of the group's later files stay as computed.",
                "security": security,
                "parameters": [api_key, { "name": "file_id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": merge(json!({
                    "200": json_ok("The file record", "FileRecord"),
                    "400": error_response("Malformed file id"),
                    "404": error_response("File not found (unknown, or another company's)"),
                    "409": error_response("code file_not_complete: the file is not COMPLETE (the message names its status)"),
                    "507": storage_full.clone()
                }), auth_errors())
            } },
            "/api/v1/privacy/deletions": {
                "post": {
                    "summary": "Privacy deletion: remove every hit and the visitor state of every visitor an identifier names or appears with, in the caller's company; recorded in the audit trail",
                    "description": "The bytes are physically gone once vacuum has removed the rewritten files (after lake.vacuum_retention_hours). The audit record keeps the identifier only as its SHA-256.",
                    "security": security,
                    "parameters": [api_key],
                    "requestBody": { "required": true, "content": { "application/json": { "schema": {
                        "$ref": "#/components/schemas/PrivacyDeletionRequest" } } } },
                    "responses": merge(json!({
                        "200": json_ok("The audit record of the deletion", "PrivacyDeletion"),
                        "400": error_response("code malformed_body, unknown_identifier_type, missing_identifier, missing_customer_id_type or unexpected_customer_id_type"),
                        "413": error_response("Body over 64 KiB"),
                        "507": storage_full
                    }), auth_errors())
                },
                "get": {
                    "summary": "The caller's company's privacy deletions, newest first",
                    "security": security,
                    "parameters": [
                        api_key,
                        { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000, "default": 100 } },
                        { "name": "cursor", "in": "query", "schema": { "type": "string" } }
                    ],
                    "responses": merge(json!({
                        "200": json_ok("A page of audit records", "PrivacyDeletionList"),
                        "400": error_response("Bad limit or cursor")
                    }), auth_errors())
                }
            }
        }),
    );
    extend(
        doc,
        "/components/schemas",
        json!({
            "IdentifierType": { "type": "string", "enum": ["customer_id", "visitor_id", "marketing_cloud_visitor_id", "ip_address"] },
            "PrivacyDeletionRequest": { "type": "object", "required": ["identifier_type", "identifier"], "properties": {
                "identifier_type": { "$ref": "#/components/schemas/IdentifierType" },
                "customer_id_type": { "type": "string", "description": "the customerIDType (case-sensitive): required for customer_id, refused otherwise" },
                "identifier": { "type": "string", "minLength": 1, "description": "the identifier as sent in the hits" } } },
            "PrivacyDeletion": { "type": "object", "required": ["id", "requested_by", "requested_at", "identifier_type",
                    "customer_id_type", "identifier_sha256", "hits_removed", "visitors", "table_version"], "properties": {
                "id": { "type": "integer" },
                "requested_by": { "type": "string", "description": "the API client id, or admin (bdia admin)" },
                "requested_at": { "type": "integer", "description": "unix seconds" },
                "identifier_type": { "$ref": "#/components/schemas/IdentifierType" },
                "customer_id_type": { "type": "string", "nullable": true },
                "identifier_sha256": { "type": "string", "description": "SHA-256 of the identifier as sent, lower-case hex" },
                "hits_removed": { "type": "integer" },
                "visitors": { "type": "integer", "description": "visitors whose hits and state were removed" },
                "table_version": { "type": "integer", "nullable": true, "description": "the lake table version of the deletion's commit; null when no hit matched" } } },
            "PrivacyDeletionList": { "type": "object", "required": ["deletions", "next_cursor"], "properties": {
                "deletions": { "type": "array", "items": { "$ref": "#/components/schemas/PrivacyDeletion" } },
                "next_cursor": { "type": "string", "nullable": true } } }
        }),
    );
    extend(
        doc,
        "/components/schemas/FileRecord/properties",
        json!({
            "hits_retracted_at": { "type": "integer", "nullable": true,
                "description": "unix seconds when the file's hits were retracted from the lake (DELETE .../{file_id}/hits); null while they count" },
            "hits_retracted": { "type": "integer", "nullable": true,
                "description": "hits the retraction removed from the lake; null while not retracted" },
            "duplicate_of": { "type": "string",
                "description": "an earlier accepted file of the company with the same bytes under another idempotency key (its rows will be counted again); absent otherwise" }
        }),
    );
    if let Some(required) = doc
        .pointer_mut("/components/schemas/FileRecord/required")
        .and_then(Value::as_array_mut)
    {
        required.extend([json!("hits_retracted_at"), json!("hits_retracted")]);
    }
}

/// The processing stage's endpoints (reject report, group retry).
fn processing_paths(doc: &mut Value, security: &Value, api_key: &Value) {
    let paths = json!({
        "/aa/collect/v1/events/{file_id}/rejects": { "get": {
            "summary": "The file's reject report as CSV (row, kind, message, raw): the first invalid rows (limits.max_reject_rows, rejects_kept in the record), then one count line per kind left out",
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
                    "type": "object", "required": ["visitor_group_id", "retried"], "properties": {
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

/// Webhooks: endpoints, their delivery log, and the delivery body.
fn webhook_paths(doc: &mut Value, security: &Value, api_key: &Value) {
    let id =
        json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } });
    let not_found = error_response("No such webhook (unknown, or another company's)");
    extend(
        doc,
        "/paths",
        json!({
            "/api/v1/webhooks": {
                "post": {
                    "summary": "Register a webhook endpoint: the caller's company's file events are POSTed to it, signed (bdia-signature)",
                    "description": "The answer carries the endpoint's secret, shown this once. Event types: file.uploaded, file.complete, file.error, file.rejected, file.retracted, file.cancelled, group.paused, group.resumed, group.cancelled.",
                    "security": security,
                    "parameters": [api_key],
                    "requestBody": { "required": true, "content": { "application/json": { "schema": {
                        "$ref": "#/components/schemas/WebhookRequest" } } } },
                    "responses": merge(json!({
                        "201": json_ok("The endpoint and its secret", "WebhookCreated"),
                        "400": error_response("code malformed_body, invalid_webhook_url or unknown_event_type"),
                        "403": error_response("The URL is outside webhooks.allowed_url_prefixes, or the client is disabled"),
                        "409": error_response("code too_many_webhooks: webhooks.max_per_company reached"),
                        "413": error_response("Body over 16 KiB")
                    }), auth_errors())
                },
                "get": {
                    "summary": "The caller's company's webhook endpoints (without secrets)",
                    "security": security,
                    "parameters": [api_key],
                    "responses": merge(json!({
                        "200": json_ok("The endpoints", "WebhookList")
                    }), auth_errors())
                }
            },
            "/api/v1/webhooks/{id}": {
                "get": {
                    "summary": "One webhook endpoint (without its secret)",
                    "security": security,
                    "parameters": [api_key, id],
                    "responses": merge(json!({
                        "200": json_ok("The endpoint", "Webhook"),
                        "404": not_found
                    }), auth_errors())
                },
                "delete": {
                    "summary": "Delete a webhook endpoint: its pending deliveries are dropped (an attempt in flight may still arrive)",
                    "security": security,
                    "parameters": [api_key, id],
                    "responses": merge(json!({
                        "204": { "description": "Deleted" },
                        "404": not_found
                    }), auth_errors())
                }
            },
            "/api/v1/webhooks/{id}/deliveries": {
                "get": {
                    "summary": "The delivery log of one endpoint, newest first: attempts, state, last status, error and latency",
                    "security": security,
                    "parameters": [
                        api_key,
                        id,
                        { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000, "default": 100 } },
                        { "name": "cursor", "in": "query", "schema": { "type": "string" } }
                    ],
                    "responses": merge(json!({
                        "200": json_ok("A page of deliveries", "WebhookDeliveryList"),
                        "400": error_response("Bad limit or cursor"),
                        "404": not_found
                    }), auth_errors())
                }
            }
        }),
    );
    extend(
        doc,
        "/components/schemas",
        json!({
            "WebhookEventType": { "type": "string", "enum": crate::webhooks::EVENT_TYPES },
            "WebhookRequest": { "type": "object", "required": ["url"], "properties": {
                "url": { "type": "string", "maxLength": crate::webhooks::MAX_URL_BYTES, "description": "http:// or https://, without user info" },
                "events": { "type": "array", "items": { "$ref": "#/components/schemas/WebhookEventType" },
                    "description": "event types to deliver; absent or empty for every type" } } },
            "Webhook": { "type": "object", "required": ["id", "url", "events", "created"], "properties": {
                "id": { "type": "string" },
                "url": { "type": "string" },
                "events": { "type": "array", "items": { "$ref": "#/components/schemas/WebhookEventType" } },
                "created": { "type": "integer", "description": "unix seconds" } } },
            "WebhookCreated": { "allOf": [ { "$ref": "#/components/schemas/Webhook" }, { "type": "object", "required": ["secret"], "properties": {
                "secret": { "type": "string", "description": "the HMAC-SHA256 key of bdia-signature; shown only here" } } } ] },
            "WebhookList": { "type": "object", "required": ["webhooks"], "properties": {
                "webhooks": { "type": "array", "items": { "$ref": "#/components/schemas/Webhook" } } } },
            "WebhookDelivery": { "type": "object", "required": ["id", "type", "file_id", "occurred_at", "attempts", "state",
                    "delivered_at", "next_attempt_ms", "last_status", "last_error", "last_latency_ms"], "properties": {
                "id": { "type": "integer", "description": "the delivery id, sent as bdia-delivery-id" },
                "type": { "$ref": "#/components/schemas/WebhookEventType" },
                "file_id": { "type": "string" },
                "occurred_at": { "type": "integer", "description": "unix seconds" },
                "attempts": { "type": "integer" },
                "state": { "type": "string", "enum": ["pending", "delivered", "given_up"] },
                "delivered_at": { "type": "integer", "nullable": true, "description": "unix seconds" },
                "next_attempt_ms": { "type": "integer", "nullable": true, "description": "unix milliseconds; pending only" },
                "last_status": { "type": "integer", "nullable": true, "description": "HTTP status of the last attempt; null without an answer" },
                "last_error": { "type": "string", "nullable": true },
                "last_latency_ms": { "type": "integer", "nullable": true } } },
            "WebhookDeliveryList": { "type": "object", "required": ["deliveries", "next_cursor"], "properties": {
                "deliveries": { "type": "array", "items": { "$ref": "#/components/schemas/WebhookDelivery" } },
                "next_cursor": { "type": "string", "nullable": true } } },
            "WebhookEvent": { "type": "object", "description": "The body POSTed to an endpoint (headers bdia-signature, bdia-delivery-id, bdia-event)",
                "required": ["type", "file_id", "visitor_group_id", "status_code", "occurred_at", "delivery_id"], "properties": {
                "type": { "$ref": "#/components/schemas/WebhookEventType" },
                "file_id": { "type": "string" },
                "visitor_group_id": { "type": "string" },
                "status_code": { "type": "string", "enum": ["UPLOADED", "REJECTED", "PROCESSING", "COMPLETE", "ERROR"] },
                "occurred_at": { "type": "integer", "description": "unix seconds" },
                "delivery_id": { "type": "integer" } } }
        }),
    );
}

/// Report suite settings and the single-hit Data Insertion API.
fn single_hit_paths(doc: &mut Value, security: &Value, api_key: &Value) {
    let rsid = json!({ "name": "rsid", "in": "path", "required": true,
        "description": "One of the caller's company's report suites",
        "schema": { "type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$" } });
    let not_found = error_response("The caller's company has no report suite of this ID");
    let hit = |method: &str| {
        json!({
            "summary": format!("One hit of Adobe's Data Insertion API ({method})"),
            "description": "Not authenticated. Only report suites set to accept single hits take them; any other rsid is answered as NO account and nothing is stored. The rsid may be a comma-separated list (all must take single hits, for one company) or empty (/b/ss//6, suite in <reportSuiteID>). A cache buster path segment after the response type is ignored. Variables: pageName (gn), g, r, ch, v0, v1..v250, c1..c75, l1..l3, h1..h5, events (ev), products (pl), purchaseID (pi), server (sv), pageType (gt), zip, xact, cc, ts, c.key context data (c. ... .c), pe/pev1/pev2, vid, aid, mid, fid, cid.<type>.id|as|ismcseed; unknown ones are ignored. XML (response type 6): the same variables as tags (reportSuiteID, visitorID, marketingCloudVisitorID, ipaddress, userAgent, timestamp, pageName, pageURL, eVarN, propN, contextData, ...), tag names case-insensitive, no DTD or custom entity. Failure reasons (shown to POST only): NO account, NO pagename OR pageurl, NO visitorid OR ipaddress, Syntax error. A 2xx means received.",
            "parameters": [
                { "name": "rsid", "in": "path", "required": true, "schema": { "type": "string" },
                  "description": "Report suite ID(s), comma-separated; may be empty for XML" },
                { "name": "response_type", "in": "path", "required": true,
                  "schema": { "type": "string", "enum": ["0", "1", "2", "3", "5", "6", "10", "11"] },
                  "description": "0: a space as text/html; 1: 1x1 GIF (default for others); 2: 204; 3: var s_vid='...'; 5: WBMP; 6: XML <status>; 10: JSON {status, id}; 11: XML <visitor>. Failures also in the Status and Reason headers (0, 1, 2, 6 except NO account)." }
            ],
            "responses": {
                "200": { "description": "Received (the body's form depends on the response type)" },
                "204": { "description": "Received (response type 2); Status header SUCCESS or FAILURE" },
                "413": error_response("Body over single_hits.max_body_bytes"),
                "429": error_response("Over the company's single-hit rate limit (Retry-After)"),
                "503": error_response("The journal is behind (Retry-After)"),
                "507": error_response("The server's disk is full; the hit was not kept")
            }
        })
    };
    let mut post = hit("POST");
    post["requestBody"] = json!({ "content": {
        "application/x-www-form-urlencoded": { "schema": { "type": "string" } },
        "application/xml": { "schema": { "type": "string" } },
        "text/xml": { "schema": { "type": "string" } } } });
    extend(
        doc,
        "/paths",
        json!({
            "/api/v1/report-suites/{rsid}": {
                "get": {
                    "summary": "One of the caller's company's report suites, with its settings",
                    "security": security,
                    "parameters": [api_key, rsid],
                    "responses": merge(json!({
                        "200": json_ok("The report suite", "ReportSuite"),
                        "400": error_response("Malformed report suite id"),
                        "404": not_found
                    }), auth_errors())
                },
                "patch": {
                    "summary": "Change a report suite's settings",
                    "description": "Settings left out are kept. internal_url_filters: at most 100, each 1 to 255 characters without spaces or commas; they apply to files processed afterwards. accept_single_hits: take hits from /b/ss/{rsid}/...; at most one company's suite of an rsid may (409 single_hits_taken otherwise). evar_settings: replaces every eVar's expiration and allocation ([] puts them all back to visit, most_recent); applies to files processed afterwards (a value already stored expires by the new setting, counted from when it was set). Nodes pick a change up within single_hits.suite_cache_secs.",
                    "security": security,
                    "parameters": [api_key, rsid],
                    "requestBody": { "required": true, "content": { "application/json": { "schema": {
                        "$ref": "#/components/schemas/SuiteSettings" } } } },
                    "responses": merge(json!({
                        "200": json_ok("The report suite as changed", "ReportSuite"),
                        "400": error_response("Malformed report suite id, or code malformed_body, invalid_internal_url_filters or invalid_evar_settings"),
                        "404": not_found,
                        "409": error_response("code single_hits_taken: another company's suite of this rsid takes its single hits")
                    }), auth_errors())
                }
            },
            "/b/ss/{rsid}/{response_type}": { "get": hit("GET"), "post": post }
        }),
    );
    extend(
        doc,
        "/components/schemas",
        json!({
            "SuiteSettings": { "type": "object", "properties": {
                "accept_single_hits": { "type": "boolean" },
                "internal_url_filters": { "type": "array", "maxItems": 100,
                    "items": { "type": "string", "minLength": 1, "maxLength": 255 },
                    "description": "Replaces the filters; [] clears them" },
                "evar_settings": { "type": "array", "maxItems": 250,
                    "items": { "type": "object", "required": ["evar", "expiration"], "properties": {
                        "evar": { "type": "integer", "minimum": 1, "maximum": 250 },
                        "expiration": { "type": "string" },
                        "allocation": { "type": "string", "enum": ["most_recent", "original"], "default": "most_recent" } } },
                    "description": "Replaces every eVar's settings; [] puts them all back to the defaults" } } }
        }),
    );
}

#[cfg(test)]
mod tests {
    //! The document against the wire types: for each body schema, a value
    //! with every optional field set (`full`) and one with none set
    //! (`min`) are serialized; the schema's properties must be the keys of
    //! `full`, its `required` list the keys of `min`, and its nullable
    //! properties the keys that `min` writes as `null`.

    use std::collections::BTreeSet;

    use bdia_wire::{
        AccessToken, ErrorBody, FileList, FileRecord, FileStatus, Group, Groups, IdentifierType,
        JsonObject, PrivacyDeletion, PrivacyDeletionList, PrivacyDeletionRequest, Readiness,
        Report, ReportSuite, ReportSuites, RetryAnswer, Usage, Validation,
    };
    use bdia_wire::{
        GroupAction, GroupActionRecord, GroupError, GroupState, GroupView, QueuePosition,
        QueueState,
    };
    use serde::Serialize;
    use serde_json::{json, Value};

    use super::document;

    fn file(status: FileStatus, full: bool) -> FileRecord {
        FileRecord {
            file_id: "f".into(),
            visitor_group_id: "g".into(),
            size: 1,
            uncompressed_size: 2,
            received_date: 3,
            rows: 4,
            invalid_rows: 5,
            upload_name: "a.csv.gz".into(),
            status: status.text().into(),
            status_code: status,
            processing_log: "log".into(),
            idempotency_key: "k".into(),
            error: full.then(|| "why".into()),
            processing_start_date: full.then_some(6),
            file_reader_complete_date: full.then_some(7),
            processing_end_date: full.then_some(8),
            rejects_kept: 5,
            hits_retracted_at: full.then_some(9),
            hits_retracted: full.then_some(10),
            duplicate_of: full.then(|| "f0".into()),
            // Written with null estimates: they are nullable.
            queue: full.then_some(QueuePosition {
                files_ahead: 1,
                rows_ahead: 2,
                estimated_start: None,
                estimated_finish: None,
                queue_state: QueueState::Paused,
            }),
        }
    }

    fn group(full: bool) -> Group {
        Group {
            visitor_group_id: "g".into(),
            queued: 1,
            in_progress: full.then(|| "f".into()),
            errors: 0,
            last_completed: full.then(|| "e".into()),
            last_completed_date: full.then_some(9),
            rows_per_second: full.then_some(1.5),
            files: 2,
        }
    }

    fn validation(full: bool) -> Validation {
        Validation {
            error: full.then(|| "bad".into()),
            invalid_rows: 0,
            processing_log: "log".into(),
            rows: 1,
            size: 2,
            status_code: FileStatus::Uploaded,
            success: full.then(|| "File is valid".into()),
            preview: full.then(|| bdia_wire::Preview {
                first_hit_time: Some("2026-01-01T00:00:00Z".into()),
                last_hit_time: Some("2026-01-02T00:00:00Z".into()),
                rows_by_suite_day: vec![bdia_wire::SuiteDayRows {
                    report_suite: "rs".into(),
                    date: "2026-01-01".into(),
                    rows: 1,
                }],
                visitors: 1,
                new_visitors: 1,
                out_of_order_rows: 0,
                rows_queued: 0,
                rows_per_second: Some(100.0),
                estimated_processing_secs: Some(0.01),
                estimate_basis: "measured".into(),
                duplicate_of: Some("f0".into()),
            }),
        }
    }

    fn pair<T: Serialize>(full: T, min: T) -> (Value, Value) {
        (
            serde_json::to_value(full).unwrap(),
            serde_json::to_value(min).unwrap(),
        )
    }

    fn deletion(full: bool) -> PrivacyDeletion {
        PrivacyDeletion {
            id: 1,
            requested_by: "client".into(),
            requested_at: 2,
            identifier_type: IdentifierType::CustomerId,
            customer_id_type: full.then(|| "crm".into()),
            identifier_sha256: "ab".into(),
            hits_removed: 3,
            visitors: 1,
            table_version: full.then_some(4),
        }
    }

    fn deletion_request(full: bool) -> PrivacyDeletionRequest {
        PrivacyDeletionRequest {
            identifier_type: "customer_id".into(),
            customer_id_type: full.then(|| "crm".into()),
            identifier: "u-1".into(),
        }
    }

    fn group_action() -> GroupActionRecord {
        GroupActionRecord {
            action: GroupAction::Cancel,
            actor: "c".into(),
            at: 1,
            files: 2,
        }
    }

    fn group_error(full: bool) -> GroupError {
        GroupError {
            file_id: "f".into(),
            error: full.then(|| "e".into()),
            error_code: full.then(|| "c".into()),
            at: full.then_some(1),
        }
    }

    fn group_view(full: bool) -> GroupView {
        GroupView {
            visitor_group_id: "g".into(),
            state: GroupState::Paused,
            files_waiting: 1,
            rows_waiting: 2,
            in_progress: full.then(|| file(FileStatus::Processing, true)),
            last_error: full.then(|| group_error(true)),
            actions: vec![group_action()],
        }
    }

    /// JSON pointer of each body schema in the document, with its samples.
    fn bodies() -> Vec<(&'static str, (Value, Value))> {
        let report = Report {
            report_suite: "rs".into(),
            dimension: "day".into(),
            from: "2026-01-01".into(),
            to: "2026-01-01".into(),
            rows: vec![JsonObject(vec![
                ("day".into(), "2026-01-01".into()),
                ("pageviews".into(), 1.into()),
            ])],
            totals: JsonObject(vec![("pageviews".into(), 1.into())]),
        };
        let suites = ReportSuites {
            report_suites: vec![ReportSuite {
                rsid: "rs".into(),
                time_zone: "UTC".into(),
                accept_single_hits: false,
                internal_url_filters: vec!["shop.example".into()],
                evar_settings: vec![bdia_wire::EvarSetting {
                    evar: 3,
                    expiration: "31d".into(),
                    allocation: "original".into(),
                }],
            }],
        };
        let token = AccessToken {
            access_token: "t".into(),
            token_type: "bearer".into(),
            expires_in: 1,
        };
        let retry = RetryAnswer {
            visitor_group_id: "g".into(),
            retried: 1,
        };
        let error = ErrorBody {
            error: "e".into(),
            code: Some("c".into()),
        };
        let error_min = ErrorBody {
            error: "e".into(),
            code: None,
        };
        let usage = Usage {
            in_use: 1,
            limit: 2,
        };
        let ready = Readiness {
            status: "ready".into(),
            passes: usage.clone(),
            reports: usage.clone(),
            database_calls: 0,
        };
        vec![
            ("/components/schemas/Usage", pair(usage.clone(), usage)),
            ("/components/schemas/Readiness", pair(ready.clone(), ready)),
            ("/components/schemas/Error", pair(error, error_min)),
            ("/components/schemas/AccessToken", pair(token.clone(), token)),
            (
                "/components/schemas/FileRecord",
                pair(
                    file(FileStatus::Error, true),
                    file(FileStatus::Uploaded, false),
                ),
            ),
            (
                "/components/schemas/FileList",
                pair(
                    FileList {
                        files: vec![file(FileStatus::Rejected, true)],
                        next_cursor: Some("c".into()),
                    },
                    FileList {
                        files: vec![file(FileStatus::Complete, false)],
                        next_cursor: None,
                    },
                ),
            ),
            (
                "/components/schemas/Validation",
                pair(validation(true), validation(false)),
            ),
            (
                "/components/schemas/Preview",
                pair(
                    validation(true).preview.unwrap(),
                    bdia_wire::Preview {
                        first_hit_time: None,
                        last_hit_time: None,
                        rows_by_suite_day: Vec::new(),
                        visitors: 0,
                        new_visitors: 0,
                        out_of_order_rows: 0,
                        rows_queued: 0,
                        rows_per_second: None,
                        estimated_processing_secs: None,
                        estimate_basis: "no estimate".into(),
                        duplicate_of: None,
                    },
                ),
            ),
            ("/components/schemas/Report", pair(report.clone(), report)),
            ("/components/schemas/ReportSuites", pair(suites.clone(), suites.clone())),
            (
                "/components/schemas/ReportSuite",
                pair(suites.report_suites[0].clone(), suites.report_suites[0].clone()),
            ),
            (
                "/components/schemas/EvarSetting",
                pair(
                    suites.report_suites[0].evar_settings[0].clone(),
                    suites.report_suites[0].evar_settings[0].clone(),
                ),
            ),
            (
                "/components/schemas/SuiteSettings",
                pair(
                    bdia_wire::SuiteSettings {
                        accept_single_hits: Some(true),
                        internal_url_filters: Some(vec!["shop.example".into()]),
                        evar_settings: Some(vec![]),
                    },
                    bdia_wire::SuiteSettings::default(),
                ),
            ),
            (
                "/components/schemas/Groups",
                pair(
                    Groups {
                        groups: vec![group(true)],
                    },
                    Groups {
                        groups: vec![group(false)],
                    },
                ),
            ),
            ("/components/schemas/Group", pair(group(true), group(false))),
            (
                "/components/schemas/PrivacyDeletion",
                pair(deletion(true), deletion(false)),
            ),
            (
                "/components/schemas/PrivacyDeletionRequest",
                pair(deletion_request(true), deletion_request(false)),
            ),
            (
                "/components/schemas/PrivacyDeletionList",
                pair(
                    PrivacyDeletionList {
                        deletions: vec![deletion(true)],
                        next_cursor: Some("c".into()),
                    },
                    PrivacyDeletionList {
                        deletions: vec![deletion(false)],
                        next_cursor: None,
                    },
                ),
            ),
            (
                "/paths/~1aa~1collect~1v1~1groups~1{vgid}~1retry/post/responses/200/content/application~1json/schema",
                pair(retry.clone(), retry),
            ),
            (
                "/components/schemas/GroupView",
                pair(group_view(true), group_view(false)),
            ),
            (
                "/components/schemas/GroupActionRecord",
                pair(group_action(), group_action()),
            ),
            (
                "/components/schemas/GroupError",
                pair(group_error(true), group_error(false)),
            ),
        ]
    }

    /// The webhook bodies, with their samples.
    fn webhook_bodies() -> Vec<(&'static str, (Value, Value))> {
        use crate::webhooks::{WireDelivery, WireWebhook};
        let hook = |events: Vec<String>| WireWebhook {
            id: "h".into(),
            url: "https://example.com/".into(),
            events,
            created: 1,
        };
        let delivery = || {
            let d = bdia_store::WebhookDelivery {
                id: 1,
                webhook_id: "h".into(),
                event_type: "file.complete".into(),
                file_id: "f".into(),
                payload: json!({"type": "file.complete", "file_id": "f", "visitor_group_id": "g",
                    "status_code": "COMPLETE", "occurred_at": 1})
                .to_string(),
                created: 1,
                attempts: 1,
                next_attempt_ms: 5,
                delivered_at: None,
                last_status: Some(500),
                last_error: Some("HTTP 500".into()),
                last_latency_ms: Some(3),
                given_up: false,
            };
            (WireDelivery::from(&d), crate::webhooks::delivery_body(&d))
        };
        let settled = {
            let mut d = WireDelivery::from(&bdia_store::WebhookDelivery {
                delivered_at: None,
                ..serde_json::from_value::<bdia_store::WebhookDelivery>(json!({
                    "id": 1, "webhook_id": "h", "event_type": "file.error", "file_id": "f",
                    "payload": "{}", "created": 1, "attempts": 1, "next_attempt_ms": 0,
                    "delivered_at": null, "last_status": null, "last_error": null,
                    "last_latency_ms": null, "given_up": true
                }))
                .unwrap()
            });
            d.next_attempt_ms = None;
            d
        };
        let (full, event) = delivery();
        let event: Value = serde_json::from_str(&event).unwrap();
        vec![
            (
                "/components/schemas/WebhookRequest",
                (
                    json!({"url": "https://example.com/", "events": ["file.complete"]}),
                    json!({"url": "https://example.com/"}),
                ),
            ),
            (
                "/components/schemas/Webhook",
                pair(hook(vec!["file.complete".into()]), hook(vec![])),
            ),
            (
                "/components/schemas/WebhookList",
                (
                    json!({"webhooks": [hook(vec!["file.error".into()])]}),
                    json!({"webhooks": [hook(vec![])]}),
                ),
            ),
            (
                "/components/schemas/WebhookDelivery",
                pair(full, settled.clone()),
            ),
            (
                "/components/schemas/WebhookDeliveryList",
                (
                    json!({"deliveries": [delivery().0], "next_cursor": "c"}),
                    json!({"deliveries": [settled], "next_cursor": null}),
                ),
            ),
            ("/components/schemas/WebhookEvent", (event.clone(), event)),
        ]
    }

    fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => doc
                .pointer(r.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("dangling {r}")),
            None => schema,
        }
    }

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    /// Checks an object schema against its samples, and the schemas of
    /// its arrays' items against the first items.
    fn check(doc: &Value, at: &str, schema: &Value, full: &Value, min: &Value) {
        let schema = resolve(doc, schema);
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            // Free-form objects (a report's rows and totals).
            assert!(
                schema.get("additionalProperties").is_some(),
                "{at}: neither properties nor additionalProperties"
            );
            return;
        };
        let documented: BTreeSet<String> = props.keys().cloned().collect();
        assert_eq!(documented, keys(full), "{at}: properties");
        let required: BTreeSet<String> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().map(|k| k.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        assert_eq!(required, keys(min), "{at}: required");
        for (name, prop) in props {
            let prop = resolve(doc, prop);
            let nullable = prop.get("nullable") == Some(&Value::Bool(true));
            // Null in `min`, or absent there and null in `full` (fields
            // written together, some of them null, such as a waiting
            // file's queue estimate).
            let null_written = match min.get(name) {
                Some(v) => v.is_null(),
                None => full.get(name) == Some(&Value::Null),
            };
            assert_eq!(nullable, null_written, "{at}.{name}: nullable");
            if let (Some(items), Some(f), Some(m)) = (
                prop.get("items"),
                full[name]
                    .as_array()
                    .and_then(|a| a.first())
                    .filter(|v| v.is_object()),
                min[name].as_array().and_then(|a| a.first()),
            ) {
                check(doc, &format!("{at}.{name}[]"), items, f, m);
            }
        }
    }

    #[test]
    fn every_body_schema_matches_its_wire_type() {
        let doc = document();
        let mut bodies = bodies();
        bodies.extend(webhook_bodies());
        for (at, (full, min)) in &bodies {
            let schema = doc
                .pointer(at)
                .unwrap_or_else(|| panic!("no schema at {at}"));
            check(&doc, at, schema, full, min);
        }
        // Every object schema of the components has its type above.
        for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
            if schema["type"] == "object" {
                let at = format!("/components/schemas/{name}");
                assert!(
                    bodies.iter().any(|(p, _)| *p == at),
                    "{name}: no wire type checked"
                );
            }
        }
    }

    #[test]
    fn statuses_are_the_wire_enum() {
        let doc = document();
        let all: Vec<Value> = FileStatus::ALL.iter().map(|s| json!(s.as_str())).collect();
        assert_eq!(doc["components"]["schemas"]["Status"]["enum"], json!(all));
        assert_eq!(
            doc["components"]["schemas"]["Validation"]["properties"]["status_code"]["enum"],
            json!([FileStatus::Uploaded, FileStatus::Rejected])
        );
    }

    #[test]
    fn a_field_missing_from_the_document_is_caught() {
        let doc = document();
        let mut full = serde_json::to_value(group(true)).unwrap();
        full["new_field"] = json!(1);
        let min = serde_json::to_value(group(false)).unwrap();
        let caught = std::panic::catch_unwind(|| {
            check(
                &doc,
                "Group",
                &doc["components"]["schemas"]["Group"],
                &full,
                &min,
            )
        });
        assert!(caught.is_err());
    }
}
