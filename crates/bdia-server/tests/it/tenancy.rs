use bdia_server::tenancy;
use bdia_store::CompanySettings;

use crate::common::*;

pub(crate) async fn second_company(
    s: &bdia_server::testing::TestServer,
    id: &str,
    settings: CompanySettings,
) -> Api {
    tenancy::create_company(&*s.state.store, id, settings)
        .await
        .unwrap();
    let (client, secret) = tenancy::create_client(&*s.state.store, id, None, None, None)
        .await
        .unwrap();
    Api::with(s, &client.client_id, &secret).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_never_see_each_other() {
    let s = start().await;
    let acme = Api::default_client(&s).await;
    let beta = second_company(&s, "beta", CompanySettings::default()).await;
    let (_, v) = acme
        .upload_with(small_file(2, "acme.prod"), "g", Some("shared-key"), None)
        .await;
    let id = v["file_id"].as_str().unwrap().to_string();

    let (st, _) = beta.get_json("/aa/collect/v1/events/key/shared-key").await;
    assert_eq!(st, 404, "another company's key");
    let (st, _) = beta.get_json(&format!("/aa/collect/v1/events/{id}")).await;
    assert_eq!(st, 404, "another company's file");
    let (_, list) = beta.get_json("/aa/collect/v1/events").await;
    assert!(list["files"].as_array().unwrap().is_empty());

    // The same key in the other company is a separate upload.
    let (st, v) = beta
        .upload_with(small_file(2, "beta.prod"), "g", Some("shared-key"), None)
        .await;
    assert_eq!(st, 200);
    assert_ne!(v["file_id"].as_str().unwrap(), id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_suites_are_per_company_and_auto_created() {
    let s = start().await;
    let acme = Api::default_client(&s).await;
    let store = &s.state.store;
    let company = s.credentials.company.clone();
    tenancy::create_report_suite(&**store, &company, "acme.prod", "Europe/Paris")
        .await
        .unwrap();
    let beta = second_company(&s, "beta", CompanySettings::default()).await;

    // A suite ID another company has is, for this one, a suite it does not
    // have yet: valid rows, and the upload creates its own.
    let (st, _) = beta.validate(small_file(1, "acme.prod")).await;
    assert_eq!(st, 200);
    let (st, v) = beta.upload(small_file(4, "acme.prod"), "g").await;
    assert_eq!(st, 200);
    assert_eq!(v["status_code"], "UPLOADED");
    assert_eq!(v["invalid_rows"], 0, "{v}");
    let theirs = store
        .get_report_suite("beta", "acme.prod")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(theirs.time_zone, "UTC");
    let mine = store
        .get_report_suite(&company, "acme.prod")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        mine.time_zone, "Europe/Paris",
        "the first company's is untouched"
    );

    // An unknown suite is created for the caller on first upload.
    let (_, v) = beta.upload(small_file(3, "beta.new"), "g").await;
    assert_eq!(v["invalid_rows"], 0);
    let rs = store
        .get_report_suite("beta", "beta.new")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (rs.company_id.as_str(), rs.time_zone.as_str()),
        ("beta", "UTC")
    );
    // ... and by another company, for that company.
    let (_, v) = acme.upload(small_file(3, "beta.new"), "g").await;
    assert_eq!(v["invalid_rows"], 0);
    assert!(store
        .get_report_suite(&company, "beta.new")
        .await
        .unwrap()
        .is_some());

    // Validate never creates suites.
    let (st, _) = acme.validate(small_file(1, "acme.unseen")).await;
    assert_eq!(st, 200);
    assert!(store
        .get_report_suite(&company, "acme.unseen")
        .await
        .unwrap()
        .is_none());

    // At most `max_new_report_suites_per_upload` new suites per upload.
    let mut csv = format!("{HEADER}\n");
    for i in 0..150 {
        csv.push_str(&format!("1700000000,v1,many.{i},Mozilla/5.0,Home\n"));
    }
    let (_, v) = beta.upload(gz(csv.as_bytes()), "g").await;
    assert_eq!(v["rows"], 150);
    assert_eq!(v["invalid_rows"], 50, "{v}");
    let owned = store.list_report_suites(Some("beta")).await.unwrap();
    assert_eq!(
        owned.iter().filter(|r| r.rsid.starts_with("many.")).count(),
        100
    );

    // A company that refuses unknown suites.
    let strict = second_company(
        &s,
        "strict",
        CompanySettings {
            auto_create_report_suites: false,
            ..CompanySettings::default()
        },
    )
    .await;
    let (_, v) = strict.upload(small_file(2, "strict.new"), "g").await;
    assert_eq!(v["invalid_rows"], 2);
    assert!(store
        .get_report_suite("strict", "strict.new")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_suite_ids_follow_one_rule_in_admin_and_validation() {
    let s = start().await;
    let company = s.credentials.company.clone();
    let err = tenancy::create_report_suite(&*s.state.store, &company, "acme@prod", "UTC")
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("'@' at position 5 is not allowed"),
        "{err:#}"
    );
    // A time zone must be one processing can use.
    let err = tenancy::create_report_suite(&*s.state.store, &company, "acme.prod", "Mars/Olympus")
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("Mars/Olympus"), "{err:#}");
    // Validation names the kind and creates nothing.
    let api = Api::default_client(&s).await;
    let (st, v) = api.validate(small_file(2, "acme@prod")).await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["invalid_rows"], 2);
    assert!(v["processing_log"]
        .as_str()
        .unwrap()
        .contains("On row: 1, invalid 'ReportSuiteID' 'acme@prod'"));
    let suites = s
        .state
        .store
        .list_report_suites(Some(&company))
        .await
        .unwrap();
    assert!(suites.iter().all(|r| r.rsid != "acme@prod"), "{suites:?}");
    s.stop().await.unwrap();
}
