//! The two example files published with the original API.

use bdia_format::fields::Field;
use bdia_format::hit::{HitType, VisitorKind};

use crate::{gz, run_with};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn query_string_example_is_valid_and_decoded() {
    let r = run_with(&gz(&fixture("adobe-querystring.csv")), &Default::default());
    assert_eq!(r.report.rejection, None);
    assert_eq!((r.report.rows, r.report.invalid_rows), (2, 0));
    let hit = &r.hits[0];
    assert_eq!(hit.timestamp, 1_492_191_617);
    assert_eq!(hit.visitor.kind, VisitorKind::Vid);
    assert_eq!(hit.visitor.id, "44444445");
    assert_eq!(hit.report_suites, ["rsidfake"]);
    assert_eq!(hit.get(Field::PageName), Some("PIGINI"));
    assert_eq!(
        hit.get(Field::LinkUrl),
        Some("https://www.adobe.com/who?q=whoisit")
    );
    assert_eq!(hit.get(Field::BrowserHeight), Some("1000"));
    assert_eq!(hit.get(Field::ColorDepth), Some("1024"));
    assert_eq!(hit.get(Field::State), Some("UT"));
    assert_eq!(hit.get(Field::CurrencyCode), Some("USD"));
    assert_eq!(hit.evars.get(&2).map(|v| v.as_str()), Some("Var21"));
    assert_eq!(hit.props.get(&3).map(|v| v.as_str()), Some("val31"));
    assert_eq!(
        hit.events
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>(),
        ["prodView", "event2"]
    );
    // A linkURL alone does not make a link hit.
    assert_eq!(hit.hit_type, HitType::PageView);
    assert_eq!(
        hit.get(Field::UserAgent),
        Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_10_1) \nAppleWebKit/537.36 (KHTML, like Gecko) Chrome/41.0.2227.1 Safari/537.36")
    );
    assert_eq!(r.hits[1].row, 2, "a quoted line break does not start a row");
}

#[test]
fn column_example_with_multiline_quoted_user_agent() {
    let r = run_with(&gz(&fixture("adobe-columns.csv")), &Default::default());
    assert_eq!(r.report.rejection, None);
    assert_eq!((r.report.rows, r.report.invalid_rows), (2, 0));
    let hit = &r.hits[1];
    assert_eq!(hit.row, 2);
    assert_eq!(hit.get(Field::PageName), Some("中文网站"));
    assert_eq!(
        hit.get(Field::UserAgent),
        Some("Mozilla/5.0 (Windows NT 6.1; WOW64; rv:40.0) Gecko/20100101 Firefox/40.1 \"Special\n Build\"")
    );
    assert_eq!(hit.get(Field::Campaign), Some("Summer"));
    assert_eq!(
        hit.context_data.get("color").map(String::as_str),
        Some("Gray")
    );
    assert_eq!(
        hit.context_data.get("frame").map(String::as_str),
        Some("Carbon")
    );
    assert_eq!(hit.props.get(&1).map(|v| v.as_str()), Some("p2"));
    assert_eq!(hit.get(Field::Channel), Some("Mobile"));
    assert_eq!(hit.visitor.id, "142805255");
    assert!(r
        .report
        .processing_log()
        .ends_with("Processing complete: 2 rows will be submitted. 0 rows were invalid."));
}

#[test]
fn crlf_version_of_the_examples_reads_the_same() {
    for name in ["adobe-columns.csv", "adobe-querystring.csv"] {
        let lf = fixture(name);
        let text = String::from_utf8(lf.clone()).unwrap();
        // Only the row ends become CRLF; line breaks inside quotes stay.
        let crlf = text.replace("\n1", "\r\n1").replace("\n中", "\r\n中");
        let a = run_with(&gz(&lf), &Default::default());
        let b = run_with(&gz(crlf.as_bytes()), &Default::default());
        assert_eq!(a.report.rows, b.report.rows);
        assert_eq!(a.hits.len(), b.hits.len());
        assert_eq!(b.report.invalid_rows, 0);
    }
}
