//! Every rule of spec sections 3–3.3, one test each.

use std::sync::Arc;

use bdia_format::engine::{Limits, Options};
use bdia_format::fields::Field;
use bdia_format::hit::{AuthState, HitType, LinkType, VisitorKind};
use bdia_format::{FileError, RowErrorKind, RowRules};

use crate::{gz, run, run_plain, run_with};

const H: &str = "timestamp,visitorID,reportSuiteID,userAgent,pageName";

fn kinds(r: &crate::Run) -> Vec<(u64, RowErrorKind)> {
    r.errors.iter().map(|e| (e.row, e.kind)).collect()
}

#[test]
fn blank_lines_are_ignored_and_rows_count_from_one() {
    let r = run(&format!(
        "{H}\n\n1500000000,v1,rs,UA,Home\n\n\n1500000001,v1,rs,,Home\n\n"
    ));
    assert_eq!(r.report.rows, 2);
    assert_eq!(kinds(&r), [(2, RowErrorKind::MissingUserAgent)]);
}

#[test]
fn crlf_and_lf_and_no_final_newline() {
    for csv in [
        format!("{H}\r\n1500000000,v1,rs,UA,Home\r\n1500000001,v1,rs,UA,About\r\n"),
        format!("{H}\n1500000000,v1,rs,UA,Home\n1500000001,v1,rs,UA,About"),
        format!("{H}\r\n1500000000,v1,rs,UA,Home\n1500000001,v1,rs,UA,About"),
    ] {
        let r = run(&csv);
        assert_eq!((r.report.rows, r.report.invalid_rows), (2, 0));
        assert_eq!(r.hits[1].get(Field::PageName), Some("About"));
    }
}

#[test]
fn bom_before_header_is_stripped() {
    let r = run(&format!("\u{feff}{H}\n1500000000,v1,rs,UA,Home\n"));
    assert_eq!(r.report.rejection, None);
    assert_eq!(r.hits.len(), 1);
    assert_eq!(r.hits[0].timestamp, 1_500_000_000);
}

#[test]
fn header_names_are_case_insensitive_in_any_order() {
    let r = run("PAGENAME,useragent,REPORTSUITEID,VisitorId,TimeStamp\nHome,UA,rs,v1,1500000000\n");
    assert_eq!(r.report.invalid_rows, 0);
    assert_eq!(r.hits[0].get(Field::PageName), Some("Home"));
    assert_eq!(r.hits[0].visitor.id, "v1");
}

#[test]
fn customer_id_type_is_case_sensitive() {
    // Two types differing in case are two columns, not a duplicate.
    let r = run(
        "timestamp,customerID.CRM.id,customerID.crm.id,customerID.CRM.isMCSeed,reportSuiteID,userAgent,pageName\n\
         1500000000,upper,lower,1,rs,UA,Home\n",
    );
    assert_eq!(r.report.rejection, None);
    let hit = &r.hits[0];
    assert_eq!(hit.visitor.kind, VisitorKind::Customer);
    assert_eq!(hit.visitor.customer_id_type.as_deref(), Some("CRM"));
    assert_eq!(hit.visitor.id, "upper");
    assert_eq!(hit.customer_ids["crm"].id, "lower");
    assert!(!hit.customer_ids["crm"].is_mc_seed);
}

#[test]
fn duplicate_header_rejects_file_but_counts_rows() {
    let r = run(&format!(
        "{H},PAGENAME\n1500000000,v1,rs,UA,Home,x\n1500000000,v1,rs,UA,Home,x\n"
    ));
    assert_eq!(
        r.report.rejection,
        Some(FileError::DuplicateColumn {
            name: "PAGENAME".into(),
            first: 5,
            second: 6
        })
    );
    assert_eq!(r.report.status_code().as_str(), "REJECTED");
    assert_eq!((r.report.rows, r.report.invalid_rows), (2, 2));
    assert!(r
        .report
        .processing_log()
        .contains("Duplicate header column 'PAGENAME' (columns 5 and 6)"));
    assert!(r.hits.is_empty());
}

#[test]
fn headers_over_the_caps_reject_the_file_with_their_reason() {
    use bdia_format::row::{MAX_COLUMNS, MAX_HEADER_BYTES};
    let extra = MAX_COLUMNS - 5 + 1;
    let mut header = H.to_string();
    for i in 0..extra {
        header.push_str(&format!(",x{i}"));
    }
    let r = run(&format!(
        "{header}\n1500000000,v1,rs,UA,Home{}\n",
        ",".repeat(extra)
    ));
    assert_eq!(
        r.report.rejection,
        Some(FileError::TooManyColumns {
            found: MAX_COLUMNS + 1,
            max: MAX_COLUMNS
        })
    );
    assert_eq!((r.report.rows, r.report.invalid_rows), (1, 1));

    // Few columns, but one name longer than the whole header may be.
    let long = "y".repeat(MAX_HEADER_BYTES);
    let r = run(&format!("{H},{long}\n1500000000,v1,rs,UA,Home,\n"));
    assert_eq!(
        r.report.rejection,
        Some(FileError::HeaderTooLong {
            bytes: H.len() - 4 + MAX_HEADER_BYTES,
            max: MAX_HEADER_BYTES
        })
    );
    assert!(r.report.processing_log().contains("Header row too long"));
}

#[test]
fn headers_too_big_to_read_reject_the_file_with_their_reason() {
    use bdia_format::row::{MAX_COLUMNS, MAX_HEADER_BYTES};
    // Over the header's read limit: never held whole, still explained.
    let long = "y".repeat(2 * MAX_HEADER_BYTES);
    let r = run(&format!("{H},{long}\n1500000000,v1,rs,UA,Home,x\n"));
    assert_eq!(
        r.report.rejection,
        Some(FileError::HeaderTooLong {
            bytes: H.len() - 4 + 2 * MAX_HEADER_BYTES,
            max: MAX_HEADER_BYTES
        })
    );
    assert_eq!((r.report.rows, r.report.invalid_rows), (1, 1));
    let many = ",ab".repeat(600_000);
    let r = run(&format!("{H}{many}\n1500000000,v1,rs,UA,Home\n"));
    assert_eq!(
        r.report.rejection,
        Some(FileError::TooManyColumns {
            found: 600_005,
            max: MAX_COLUMNS
        })
    );
}

fn with_max_row(max_row_bytes: u64) -> Options {
    Options {
        limits: Limits {
            max_row_bytes,
            ..Limits::default()
        },
        ..Options::default()
    }
}

#[test]
fn a_row_over_the_size_limit_is_invalid_and_the_rows_after_it_are_read() {
    // The long field is quoted and holds line breaks: the row ends where
    // the quoting says, not at the first line break.
    let long = "x".repeat(5000);
    let csv = format!(
        "{H}\n1500000000,v1,rs,UA,Home\n1500000001,v1,rs,UA,\"{long}\nstill, the row\"\n\
         1500000002,v1,rs,UA,After\n"
    );
    let r = run_with(&gz(csv.as_bytes()), &with_max_row(100));
    assert_eq!((r.report.rows, r.report.invalid_rows), (3, 1));
    assert_eq!(kinds(&r), [(2, RowErrorKind::RowTooLong)]);
    // 16 bytes of short fields, 5,015 of the long one, 4 separators.
    let message = "row too long: 5035 bytes (at most 100)";
    assert_eq!(r.errors[0].message, message);
    assert!(r.report.processing_log().contains(&format!(
        "On row: 2, {message}. This row will not be submitted."
    )));
    let pages: Vec<_> = r.hits.iter().map(|h| h.get(Field::PageName)).collect();
    assert_eq!(pages, [Some("Home"), Some("After")]);
    // The reject record is the row's start only.
    let raw = &r.raw_invalid[0];
    assert_eq!(
        raw[..4],
        [
            b"1500000001".to_vec(),
            b"v1".to_vec(),
            b"rs".to_vec(),
            b"UA".to_vec()
        ]
    );
    assert!(raw[4].iter().all(|&b| b == b'x'));
    let kept: usize = raw.iter().map(Vec::len).sum();
    assert!(kept <= bdia_format::records::EXCERPT_BYTES, "{kept}");
}

#[test]
fn the_row_size_limit_counts_bytes_of_fields_and_separators() {
    // "1500000000,v1,rs,UA,Home": 24 bytes.
    let csv = format!("{H}\n1500000000,v1,rs,UA,Home\r\n");
    let r = run_with(&gz(csv.as_bytes()), &with_max_row(24));
    assert_eq!((r.report.rows, r.report.invalid_rows), (1, 0));
    let r = run_with(&gz(csv.as_bytes()), &with_max_row(23));
    assert_eq!(kinds(&r), [(1, RowErrorKind::RowTooLong)]);
    // The default: 1 MiB.
    let page = |n: usize| "p".repeat(n - "1500000000,v1,rs,UA,".len());
    let max = bdia_format::engine::DEFAULT_MAX_ROW_BYTES as usize;
    let csv = format!(
        "{H}\n1500000000,v1,rs,UA,{}\n1500000000,v1,rs,UA,{}",
        page(max),
        page(max + 1)
    );
    let r = run(&csv);
    assert_eq!(kinds(&r), [(2, RowErrorKind::RowTooLong)]);
    assert_eq!(r.hits.len(), 1);
}

#[test]
fn trailing_comma_in_header_rejects_file() {
    let r = run(&format!("{H},\n1500000000,v1,rs,UA,Home,\n"));
    assert_eq!(
        r.report.rejection,
        Some(FileError::EmptyColumnName { column: 6 })
    );
}

#[test]
fn trailing_comma_in_row_is_an_extra_field() {
    let r = run(&format!("{H}\n1500000000,v1,rs,UA,Home,\n"));
    assert_eq!(kinds(&r), [(1, RowErrorKind::ColumnCount)]);
    assert!(r
        .report
        .processing_log()
        .contains("On row: 1, inconsistent column count. Expected 5 columns, but found 6."));
    // A legitimately empty last column is fine.
    let r = run(
        "timestamp,visitorID,reportSuiteID,userAgent,pageName,prop1\n1500000000,v1,rs,UA,Home,\n",
    );
    assert_eq!(r.report.invalid_rows, 0);
}

#[test]
fn ragged_rows_are_invalid() {
    let r = run(&format!(
        "{H}\n1500000000,v1,rs,UA\n1500000000,v1,rs,UA,Home,extra,more\n1500000000,v1,rs,UA,Home\n"
    ));
    assert_eq!(
        kinds(&r),
        [
            (1, RowErrorKind::ColumnCount),
            (2, RowErrorKind::ColumnCount)
        ]
    );
    assert_eq!(
        r.errors[1].message,
        "inconsistent column count. Expected 5 columns, but found 7"
    );
}

#[test]
fn missing_timestamp_or_visitor_column_rejects() {
    let r = run("visitorID,reportSuiteID,userAgent,pageName\nv1,rs,UA,Home\n");
    assert_eq!(r.report.rejection, Some(FileError::MissingTimestampColumn));
    assert_eq!((r.report.rows, r.report.invalid_rows), (1, 1));
    let r = run(
        "timestamp,reportSuiteID,userAgent,pageName,queryString\n1500000000,rs,UA,Home,vid=1\n",
    );
    assert_eq!(r.report.rejection, Some(FileError::MissingVisitorIdColumn));
    for col in ["marketingCloudVisitorID", "IPAddress", "customerID.x.id"] {
        let r = run(&format!(
            "timestamp,{col},reportSuiteID,userAgent,pageName\n1500000000,a,rs,UA,Home\n"
        ));
        assert_eq!(r.report.rejection, None, "{col} is a visitor-ID column");
    }
}

#[test]
fn empty_file_is_rejected() {
    let r = run("");
    assert_eq!(r.report.rejection, Some(FileError::Empty));
    assert_eq!(r.report.rows, 0);
}

#[test]
fn unknown_columns_are_named_once_as_a_warning() {
    let r = run(&format!(
        "{H},favouriteColour\n1500000000,v1,rs,UA,Home,red\n1500000000,v1,rs,UA,Home,blue\n"
    ));
    assert_eq!(r.report.invalid_rows, 0);
    let log = r.report.processing_log();
    assert_eq!(log.matches("favouriteColour").count(), 1);
    assert!(log.starts_with("Warning: unknown column 'favouriteColour' (column 6) is ignored."));
}

#[test]
fn timestamps_iso_with_offsets_and_z() {
    let r = run(&format!(
        "{H}\n2017-09-27T22:25:35,v1,rs,UA,A\n2017-09-27T22:25:35Z,v1,rs,UA,B\n2017-09-27T23:25:35+01:00,v1,rs,UA,C\n2017-09-27T17:25:35-05:00,v1,rs,UA,D\n"
    ));
    assert_eq!(r.report.invalid_rows, 0);
    assert!(r.hits.iter().all(|h| h.timestamp == 1_506_551_135));
}

#[test]
fn timestamps_with_milliseconds_are_invalid() {
    let r = run(&format!(
        "{H}\n1506551135000,v1,rs,UA,A\n2017-09-27T22:25:35.120Z,v1,rs,UA,B\n1506551135.5,v1,rs,UA,C\nyesterday,v1,rs,UA,D\n,v1,rs,UA,E\n"
    ));
    assert_eq!(
        kinds(&r),
        [
            (1, RowErrorKind::InvalidTimestamp),
            (2, RowErrorKind::InvalidTimestamp),
            (3, RowErrorKind::InvalidTimestamp),
            (4, RowErrorKind::InvalidTimestamp),
            (5, RowErrorKind::MissingTimestamp),
        ]
    );
    assert!(r.errors[0].message.contains("milliseconds are not allowed"));
}

#[test]
fn multiple_report_suites() {
    let r = run(&format!(
        "{H}\n1500000000,v1,\"rs1, rs2,rs3\",UA,Home\n1500000000,v1,\" , \",UA,Home\n"
    ));
    assert_eq!(r.hits[0].report_suites, ["rs1", "rs2", "rs3"]);
    assert_eq!(kinds(&r), [(2, RowErrorKind::MissingReportSuite)]);
}

#[test]
fn report_suites_of_another_company_are_invalid_rows() {
    let opts = Options {
        rules: RowRules {
            allow_report_suite: Some(Arc::new(|rs: &str| rs.starts_with("acme"))),
            ..RowRules::default()
        },
        ..Options::default()
    };
    let csv = format!(
        "{H}\n1500000000,v1,acme.prod,UA,Home\n1500000000,v1,\"acme.prod,globex.prod\",UA,Home\n"
    );
    let r = run_with(&gz(csv.as_bytes()), &opts);
    assert_eq!(kinds(&r), [(2, RowErrorKind::ReportSuiteNotAllowed)]);
    assert!(r.errors[0].message.contains("'globex.prod'"));
}

#[test]
fn invalid_report_suite_ids_are_invalid_rows_of_their_own_kind() {
    let long = "x".repeat(101);
    let csv = format!(
        "{H}\n\
         1500000000,v1,acme.prod,UA,Home\n\
         1500000001,v1,acme@prod,UA,Home\n\
         1500000002,v1,\"acme.prod, acme:prod\",UA,Home\n\
         1500000003,v1,_staging,UA,Home\n\
         1500000004,v1,{long},UA,Home\n\
         1500000005,v1,\"acme.prod,,acme.dev,\",UA,Home\n"
    );
    let r = run(&csv);
    assert_eq!(
        kinds(&r),
        [
            (2, RowErrorKind::InvalidReportSuite),
            (3, RowErrorKind::InvalidReportSuite),
            (4, RowErrorKind::InvalidReportSuite),
            (5, RowErrorKind::InvalidReportSuite),
        ]
    );
    assert_eq!(
        RowErrorKind::InvalidReportSuite.code(),
        "invalid_report_suite"
    );
    // The file itself is accepted: the other rows go on.
    assert_eq!(r.report.status_code().as_str(), "UPLOADED");
    assert_eq!((r.report.rows, r.report.invalid_rows), (6, 4));
    assert_eq!(r.hits.len(), 2);
    assert_eq!(r.hits[1].report_suites, ["acme.prod", "acme.dev"]);
    assert_eq!(
        r.errors[0].message,
        "invalid 'ReportSuiteID' 'acme@prod': '@' at position 5 is not allowed \
         (only letters, digits, '.', '-' and '_')"
    );
    assert!(
        r.errors[1].message.contains("'acme:prod'"),
        "{}",
        r.errors[1].message
    );
    assert!(r.errors[2].message.contains("starts with '_'"));
    assert!(r.errors[3]
        .message
        .contains("101 characters long (at most 100)"));
    let log = r.report.processing_log();
    assert!(log.contains(
        "On row: 2, invalid 'ReportSuiteID' 'acme@prod': '@' at position 5 is not allowed \
         (only letters, digits, '.', '-' and '_'). This row will not be submitted."
    ));
    assert!(log.contains("Processing complete: 2 rows will be submitted. 4 rows were invalid."));
    assert_eq!(r.report.log.counts()[&RowErrorKind::InvalidReportSuite], 4);
}

#[test]
fn the_suite_policy_never_sees_an_invalid_id() {
    let asked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = asked.clone();
    let opts = Options {
        rules: RowRules {
            // Refuses everything: a bad ID is still reported as invalid,
            // not as a suite the caller may not write to.
            allow_report_suite: Some(Arc::new(move |rs: &str| {
                seen.lock().unwrap().push(rs.to_string());
                false
            })),
            ..RowRules::default()
        },
        ..Options::default()
    };
    let csv =
        format!("{H}\n1500000000,v1,acme@prod,UA,Home\n1500000000,v1,\"a@b,acme.prod\",UA,Home\n");
    let r = run_with(&gz(csv.as_bytes()), &opts);
    assert_eq!(
        kinds(&r),
        [
            (1, RowErrorKind::InvalidReportSuite),
            (2, RowErrorKind::InvalidReportSuite)
        ]
    );
    assert!(asked.lock().unwrap().is_empty());
}

#[test]
fn many_invalid_report_suites_are_summarised() {
    let rows: String = (0..15)
        .map(|i| format!("{},v{i},acme@prod,UA,Home\n", 1_500_000_000 + i))
        .collect();
    let r = run(&format!("{H}\n{rows}1500000100,v1,acme.prod,UA,Home\n"));
    let log = r.report.processing_log();
    assert_eq!(log.matches("On row: ").count(), 10);
    assert!(
        log.contains("... and 5 more rows with invalid 'ReportSuiteID' (15 in all)."),
        "{log}"
    );
    assert!(log.contains("Processing complete: 1 rows will be submitted. 15 rows were invalid."));
}

#[test]
fn link_hits_and_page_views() {
    let r = run(
        "timestamp,visitorID,reportSuiteID,userAgent,pageName,pageURL,linkType,linkName,linkURL\n\
         1500000000,v1,rs,UA,Home,,,,\n\
         1500000000,v1,rs,UA,Home,,d,,http://x/f.pdf\n\
         1500000000,v1,rs,UA,,,e,,http://partner\n\
         1500000000,v1,rs,UA,Home,,,Buy now,\n\
         1500000000,v1,rs,UA,,http://x/,,,http://x/only-url\n\
         1500000000,v1,rs,UA,,,o,,\n",
    );
    let types: Vec<HitType> = r.hits.iter().map(|h| h.hit_type).collect();
    assert_eq!(
        types,
        [
            HitType::PageView,
            HitType::Link(LinkType::Download),
            HitType::Link(LinkType::Exit),
            HitType::Link(LinkType::Custom),
            HitType::PageView,
        ]
    );
    // linkType alone with neither name nor URL reports nothing.
    assert_eq!(kinds(&r), [(6, RowErrorKind::NothingToReport)]);
}

#[test]
fn query_string_only_rows() {
    let r = run("timestamp,visitorID,reportSuiteID,userAgent,queryString\n\
         1500000000,v1,rs,UA,pageName=Home%20Page&v5=x\n\
         1500000000,v1,rs,UA,g=http%3A%2F%2Fx.com%2F\n\
         1500000000,v1,rs,UA,pe=lnk_d&pev1=http%3A%2F%2Fx.com%2Ff.pdf\n\
         1500000000,v1,rs,UA,v1=only-an-evar\n\
         1500000000,v1,rs,UA,\n");
    assert_eq!(
        kinds(&r),
        [
            (4, RowErrorKind::NothingToReport),
            (5, RowErrorKind::NothingToReport)
        ]
    );
    assert_eq!(r.hits[0].get(Field::PageName), Some("Home Page"));
    assert_eq!(r.hits[0].evars[&5], "x");
    assert_eq!(r.hits[1].get(Field::PageUrl), Some("http://x.com/"));
    assert_eq!(r.hits[2].hit_type, HitType::Link(LinkType::Download));
}

#[test]
fn columns_win_over_query_string() {
    let r = run(
        "timestamp,visitorID,reportSuiteID,userAgent,pageName,eVar1,queryString\n\
         1500000000,v1,rs,UA,Column Page,col,pageName=QS%20Page&v1=qs&v2=qs2&vid=other\n\
         1500000000,v1,rs,UA,,,pageName=QS%20Page&v1=qs\n",
    );
    assert_eq!(r.hits[0].get(Field::PageName), Some("Column Page"));
    assert_eq!(r.hits[0].evars[&1], "col");
    assert_eq!(r.hits[0].evars[&2], "qs2");
    assert_eq!(r.hits[0].visitor.id, "v1");
    // An empty column does not hide the queryString value.
    assert_eq!(r.hits[1].get(Field::PageName), Some("QS Page"));
    assert_eq!(r.hits[1].evars[&1], "qs");
}

#[test]
fn visitor_priority() {
    let r = run(
        "timestamp,customerID.crm.id,customerID.crm.isMCSeed,visitorID,marketingCloudVisitorID,IPAddress,reportSuiteID,userAgent,pageName\n\
         1500000000,c1,true,v1,m1,1.2.3.4,rs,UA,P\n\
         1500000000,c1,0,v1,m1,1.2.3.4,rs,UA,P\n\
         1500000000,c1,,,m1,1.2.3.4,rs,UA,P\n\
         1500000000,,,,,1.2.3.4,rs,UA,P\n\
         1500000000,c1,,,,,rs,UA,P\n",
    );
    let got: Vec<(VisitorKind, &str)> = r
        .hits
        .iter()
        .map(|h| (h.visitor.kind, h.visitor.id.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (VisitorKind::Customer, "c1"),
            (VisitorKind::Vid, "v1"),
            (VisitorKind::Mcid, "m1"),
            (VisitorKind::Ip, "1.2.3.4"),
        ]
    );
    // A customer ID that is not a seed identifies nobody.
    assert_eq!(kinds(&r), [(5, RowErrorKind::MissingVisitorId)]);
    // Kinds are namespaced: an IP and an equal-looking visitorID never merge.
    let ip = run("timestamp,visitorID,IPAddress,reportSuiteID,userAgent,pageName\n1,,1.2.3.4,rs,UA,P\n2,1.2.3.4,,rs,UA,P\n");
    assert_ne!(ip.hits[0].visitor.key(), ip.hits[1].visitor.key());
}

#[test]
fn provisioned_seed_type_ignores_other_types() {
    let csv = "timestamp,customerID.loyalty.id,customerID.loyalty.isMCSeed,customerID.crm.id,customerID.crm.isMCSeed,visitorID,reportSuiteID,userAgent,pageName\n\
               1500000000,L1,1,C1,1,v1,rs,UA,P\n\
               1500000000,L1,1,,,v1,rs,UA,P\n";
    // Unprovisioned: the first seeded type in header order wins.
    let r = run(csv);
    assert_eq!(
        r.hits[0].visitor.customer_id_type.as_deref(),
        Some("loyalty")
    );
    // Provisioned with crm: loyalty's isMCSeed is ignored.
    let opts = Options {
        rules: RowRules {
            seed_customer_id_type: Some("crm".into()),
            ..RowRules::default()
        },
        ..Options::default()
    };
    let r = run_with(&gz(csv.as_bytes()), &opts);
    assert_eq!(r.hits[0].visitor.customer_id_type.as_deref(), Some("crm"));
    assert_eq!(r.hits[1].visitor.kind, VisitorKind::Vid);
}

#[test]
fn auth_state_and_is_mc_seed_values() {
    let r = run(
        "timestamp,customerID.crm.id,customerID.crm.authState,customerID.crm.isMCSeed,visitorID,reportSuiteID,userAgent,pageName\n\
         1,c1,authenticated,TRUE,v,rs,UA,P\n\
         2,c1,2,false,v,rs,UA,P\n\
         3,c1,LOGGED_IN,1,v,rs,UA,P\n\
         4,c1,1,yes,v,rs,UA,P\n\
         5,,1,1,v,rs,UA,P\n\
         6,c1,,,v,rs,UA,P\n",
    );
    assert_eq!(
        kinds(&r),
        [
            (3, RowErrorKind::InvalidAuthState),
            (4, RowErrorKind::InvalidIsMcSeed),
            (5, RowErrorKind::SeedWithoutId)
        ]
    );
    assert_eq!(
        r.hits[0].customer_ids["crm"].auth_state,
        Some(AuthState::Authenticated)
    );
    assert_eq!(
        r.hits[1].customer_ids["crm"].auth_state,
        Some(AuthState::LoggedOut)
    );
    assert!(r.errors[0]
        .message
        .contains("'customerID.crm.authState' 'LOGGED_IN'"));
}

#[test]
fn customer_ids_from_query_string() {
    let r = run(
        "timestamp,visitorID,reportSuiteID,userAgent,pageName,queryString\n\
         1,,rs,UA,P,cid.crm.id=abc&cid.crm.as=1&cid.crm.ismcseed=1\n\
         2,v,rs,UA,P,cid.crm.as=bogus\n",
    );
    assert_eq!(r.hits[0].visitor.kind, VisitorKind::Customer);
    assert_eq!(r.hits[0].visitor.id, "abc");
    assert_eq!(kinds(&r), [(2, RowErrorKind::InvalidAuthState)]);
    assert!(r.errors[0].message.contains("queryString 'cid.crm.as'"));
}

#[test]
fn invalid_utf8_is_an_invalid_row() {
    let mut csv = format!("{H}\n1500000000,v1,rs,UA,Home\n1500000000,v1,rs,UA,Caf").into_bytes();
    csv.extend_from_slice(b"\xe9\n1500000000,v1,rs,UA,pageName\n");
    let r = run_plain(&csv);
    assert_eq!(kinds(&r), [(2, RowErrorKind::InvalidUtf8)]);
    assert_eq!(
        r.errors[0].message,
        "invalid UTF-8 in column 5 ('pageName')"
    );
    assert_eq!(r.raw_invalid[0][4], b"Caf\xe9");
    // Percent-encoded bytes that are not UTF-8 after decoding too.
    let r =
        run("timestamp,visitorID,reportSuiteID,userAgent,queryString\n1,v,rs,UA,pageName=%FF\n");
    assert_eq!(kinds(&r), [(1, RowErrorKind::InvalidUtf8)]);
}

#[test]
fn missing_required_values() {
    let r = run(&format!(
        "{H}\n1,,rs,UA,P\n1,v,,UA,P\n1,v,rs,,P\n1,v,rs,UA,\n"
    ));
    assert_eq!(
        kinds(&r),
        [
            (1, RowErrorKind::MissingVisitorId),
            (2, RowErrorKind::MissingReportSuite),
            (3, RowErrorKind::MissingUserAgent),
            (4, RowErrorKind::NothingToReport)
        ]
    );
    let log = r.report.processing_log();
    assert!(log.contains("On row: 3, missing 'UserAgent'. This row will not be submitted."));
    assert!(log.ends_with("Processing complete: 0 rows will be submitted. 4 rows were invalid."));
}

#[test]
fn all_rows_invalid_is_still_uploaded() {
    let r = run(&format!("{H}\n1,v,rs,,P\n2,v,rs,,P\n"));
    assert_eq!(r.report.status_code().as_str(), "UPLOADED");
    assert_eq!(r.report.invalid_rows, r.report.rows);
}

#[test]
fn quoted_fields_with_commas_quotes_and_newlines() {
    let r = run(&format!(
        "{H}\n1,v,rs,\"UA, with \"\"quotes\"\"\nand a newline\",\"Shoes, \"\"red\"\"\"\n2,v,rs,UA,After\n"
    ));
    assert_eq!(r.report.invalid_rows, 0);
    assert_eq!(
        r.hits[0].get(Field::UserAgent),
        Some("UA, with \"quotes\"\nand a newline")
    );
    assert_eq!(r.hits[0].get(Field::PageName), Some("Shoes, \"red\""));
    assert_eq!(r.hits[1].row, 2);
}

#[test]
fn events_are_parsed() {
    let r = run("timestamp,visitorID,reportSuiteID,userAgent,pageName,events\n1,v,rs,UA,P,\"purchase,event1,event2=5, event3=abc\"\n");
    let ev: Vec<(&str, Option<f64>)> = r.hits[0]
        .events
        .iter()
        .map(|e| (e.name.as_str(), e.value))
        .collect();
    assert_eq!(
        ev,
        [
            ("purchase", None),
            ("event1", None),
            ("event2", Some(5.0)),
            ("event3", None)
        ]
    );
}
