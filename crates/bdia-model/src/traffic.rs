//! Referrers to traffic sources: the referrer type of a hit and, for a
//! search engine, its name.
//!
//! The rules, in order ([`classify`]):
//!
//! 1. No referrer (missing or blank): `typed_bookmarked`.
//! 2. `imap://` or `mail://`: `email`; `file://`: `hard_drive`.
//! 3. Any other referrer that is not an `http://` or `https://` URL with a
//!    host: `typed_bookmarked` (a referrer set without its protocol cannot
//!    be classified).
//! 4. A host matching the report suite's internal URL filters: `internal`.
//!    A filter matches when it is a part of the referrer's host (ASCII
//!    case-insensitive). Without filters, the host of the hit's own page
//!    URL is the one filter, matched as the whole host.
//! 5. A host of a search engine of [`SEARCH_ENGINES`] whose URL carries
//!    that engine's keyword parameter (even empty): `search_engine`, with
//!    the engine's name.
//! 6. A host of a social network of [`SOCIAL_NETWORKS`]: `social`.
//! 7. Anything else: `other_web_site`.
//!
//! A domain of the tables matches its host and every host under it
//! (`facebook.com` matches `m.facebook.com`); a domain ending in `.*`
//! matches the name under any top-level domain of one or two labels
//! (`google.*` matches `www.google.co.uk`, not `google.example.net.evil`).

use std::borrow::Cow;

/// The type of a hit's referrer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReferrerType {
    /// No referrer: the address was typed, bookmarked or opened from an app.
    TypedBookmarked,
    /// A page of the site itself (internal URL filters).
    Internal,
    /// A known search engine with its keyword parameter.
    SearchEngine,
    /// A known social network.
    Social,
    /// Any other web site.
    OtherWebSite,
    /// A mail client (`imap://`, `mail://`).
    Email,
    /// A local file (`file://`).
    HardDrive,
}

impl ReferrerType {
    /// The lake's value.
    pub fn as_str(self) -> &'static str {
        match self {
            ReferrerType::TypedBookmarked => "typed_bookmarked",
            ReferrerType::Internal => "internal",
            ReferrerType::SearchEngine => "search_engine",
            ReferrerType::Social => "social",
            ReferrerType::OtherWebSite => "other_web_site",
            ReferrerType::Email => "email",
            ReferrerType::HardDrive => "hard_drive",
        }
    }
}

/// The traffic source of one hit in one report suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    /// The referrer type.
    pub referrer_type: ReferrerType,
    /// The search engine's name when the type is `search_engine`.
    pub search_engine: Option<&'static str>,
}

impl Traffic {
    fn of(referrer_type: ReferrerType) -> Traffic {
        Traffic {
            referrer_type,
            search_engine: None,
        }
    }
}

/// A search engine: its name, domains and keyword parameters.
#[derive(Debug)]
pub struct SearchEngine {
    /// The name reported.
    pub name: &'static str,
    /// Its domains (see the module docs for `.*`).
    pub domains: &'static [&'static str],
    /// Query parameters that carry the keywords.
    pub keywords: &'static [&'static str],
}

/// The search engines recognised, the largest by use.
pub const SEARCH_ENGINES: &[SearchEngine] = &[
    SearchEngine {
        name: "Google",
        domains: &["google.*"],
        keywords: &["q"],
    },
    SearchEngine {
        name: "Microsoft Bing",
        domains: &["bing.com"],
        keywords: &["q"],
    },
    SearchEngine {
        name: "Yahoo!",
        domains: &["search.yahoo.com", "search.yahoo.co.jp"],
        keywords: &["p"],
    },
    SearchEngine {
        name: "DuckDuckGo",
        domains: &["duckduckgo.com"],
        keywords: &["q"],
    },
    SearchEngine {
        name: "Baidu",
        domains: &["baidu.com"],
        keywords: &["wd", "word"],
    },
    SearchEngine {
        name: "Yandex",
        domains: &["yandex.*", "ya.ru"],
        keywords: &["text"],
    },
    SearchEngine {
        name: "Ecosia",
        domains: &["ecosia.org"],
        keywords: &["q"],
    },
    SearchEngine {
        name: "Naver",
        domains: &["search.naver.com"],
        keywords: &["query"],
    },
    SearchEngine {
        name: "Seznam",
        domains: &["search.seznam.cz"],
        keywords: &["q"],
    },
    SearchEngine {
        name: "Qwant",
        domains: &["qwant.com"],
        keywords: &["q"],
    },
    SearchEngine {
        name: "Ask",
        domains: &["ask.com"],
        keywords: &["q"],
    },
    SearchEngine {
        name: "Sogou",
        domains: &["sogou.com"],
        keywords: &["query"],
    },
    SearchEngine {
        name: "AOL",
        domains: &["search.aol.com"],
        keywords: &["q", "query"],
    },
    SearchEngine {
        name: "Startpage",
        domains: &["startpage.com"],
        keywords: &["q", "query"],
    },
    SearchEngine {
        name: "Brave Search",
        domains: &["search.brave.com"],
        keywords: &["q"],
    },
];

/// The social networks recognised, by domain.
pub const SOCIAL_NETWORKS: &[&str] = &[
    "facebook.com",
    "fb.com",
    "instagram.com",
    "twitter.com",
    "x.com",
    "t.co",
    "linkedin.com",
    "lnkd.in",
    "pinterest.*",
    "reddit.com",
    "youtube.com",
    "tiktok.com",
    "tumblr.com",
    "vk.com",
    "threads.net",
    "bsky.app",
    "mastodon.social",
    "snapchat.com",
    "quora.com",
    "weibo.com",
    "xing.com",
    "t.me",
];

/// The host of a referrer URL, lower-cased, without user info, port or a
/// trailing dot; `None` when there is none. `https://User@WWW.Example.com:8080/a?b`
/// gives `www.example.com`; a value without `://` is read from its start
/// (`example.com/x` gives `example.com`).
pub fn referrer_host(referrer: &str) -> Option<String> {
    host_of(referrer).map(|h| h.into_owned())
}

/// [`referrer_host`] without a copy when the host is already lower case
/// (it runs once or twice per hit).
fn host_of(referrer: &str) -> Option<Cow<'_, str>> {
    let r = trim(referrer);
    let rest = match r.find("://") {
        Some(i) => &r[i + 3..],
        None => r.strip_prefix("//").unwrap_or(r),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host.starts_with('[') {
        host.find(']').map_or(host, |i| &host[..=i])
    } else {
        host.split(':').next().unwrap_or("")
    };
    let host = host.trim_end_matches('.');
    if host.is_empty() {
        None
    } else if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(Cow::Owned(host.to_ascii_lowercase()))
    } else {
        Some(Cow::Borrowed(host))
    }
}

/// [`str::trim`], without looking at the characters when the value starts
/// and ends with a printable ASCII character (nearly every URL, twice per
/// hit), which `str::trim` would keep anyway.
fn trim(s: &str) -> &str {
    let printable = |b: Option<&u8>| b.is_some_and(|b| (0x21..0x7f).contains(b));
    if printable(s.as_bytes().first()) && printable(s.as_bytes().last()) {
        s
    } else {
        s.trim()
    }
}

/// Whether `host` is `domain` or under it; `name.*` matches `name` under a
/// top-level domain of one or two labels.
fn matches_domain(host: &str, domain: &str) -> bool {
    match domain.strip_suffix(".*") {
        // `name` followed by one or two labels, at a label boundary.
        Some(name) => host.match_indices(name).any(|(i, _)| {
            let at_start = i == 0 || host.as_bytes()[i - 1] == b'.';
            let rest = &host[i + name.len()..];
            at_start
                && rest.starts_with('.')
                && rest.len() > 1
                && (1..=2).contains(&rest[1..].split('.').count())
                && rest[1..].split('.').all(|l| !l.is_empty())
        }),
        None => {
            host == domain
                || host
                    .strip_suffix(domain)
                    .is_some_and(|rest| rest.ends_with('.'))
        }
    }
}

/// Whether the query string of `url` has the parameter `name` (even empty).
fn has_param(url: &str, name: &str) -> bool {
    let Some((_, query)) = url.split_once('?') else {
        return false;
    };
    let query = query.split('#').next().unwrap_or("");
    query
        .split('&')
        .any(|pair| pair.split('=').next() == Some(name))
}

/// Classifies one hit's referrer (module docs). `page_url` is the hit's own
/// page; `internal_url_filters` are the report suite's (empty: the page's
/// host).
pub fn classify(
    referrer: Option<&str>,
    page_url: Option<&str>,
    internal_url_filters: &[String],
) -> Traffic {
    classify_with(referrer, page_url, internal_url_filters, HostSources::of)
}

/// [`classify`], with `sources` giving the table matches of a host.
fn classify_with(
    referrer: Option<&str>,
    page_url: Option<&str>,
    internal_url_filters: &[String],
    sources: impl FnOnce(&str) -> HostSources,
) -> Traffic {
    let Some(r) = referrer.map(trim).filter(|r| !r.is_empty()) else {
        return Traffic::of(ReferrerType::TypedBookmarked);
    };
    let scheme = r.split_once("://").map(|(s, _)| s);
    let is = |name: &str| scheme.is_some_and(|s| s.eq_ignore_ascii_case(name));
    if is("imap") || is("mail") {
        return Traffic::of(ReferrerType::Email);
    }
    if is("file") {
        return Traffic::of(ReferrerType::HardDrive);
    }
    if !(is("http") || is("https")) {
        return Traffic::of(ReferrerType::TypedBookmarked);
    }
    let Some(host) = host_of(r) else {
        return Traffic::of(ReferrerType::TypedBookmarked);
    };
    let host = host.as_ref();
    let internal = if internal_url_filters.is_empty() {
        page_url.and_then(host_of).is_some_and(|p| p == host)
    } else {
        internal_url_filters.iter().any(|f| {
            let f = f.trim();
            !f.is_empty()
                && host
                    .as_bytes()
                    .windows(f.len())
                    .any(|w| w.eq_ignore_ascii_case(f.as_bytes()))
        })
    };
    if internal {
        return Traffic::of(ReferrerType::Internal);
    }
    external(r, sources(host))
}

/// Rules 5 to 7 for an external referrer `r` whose host has `sources`.
fn external(r: &str, sources: HostSources) -> Traffic {
    let mut engines = sources.engines;
    while engines != 0 {
        let engine = &SEARCH_ENGINES[engines.trailing_zeros() as usize];
        if engine.keywords.iter().any(|k| has_param(r, k)) {
            return Traffic {
                referrer_type: ReferrerType::SearchEngine,
                search_engine: Some(engine.name),
            };
        }
        engines &= engines - 1;
    }
    if sources.social {
        return Traffic::of(ReferrerType::Social);
    }
    Traffic::of(ReferrerType::OtherWebSite)
}

/// What the tables say about one host: the search engines whose domains it
/// matches (bit `i`: `SEARCH_ENGINES[i]`), and whether it is a social
/// network's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HostSources {
    engines: u32,
    social: bool,
}

impl HostSources {
    fn of(host: &str) -> HostSources {
        const _: () = assert!(SEARCH_ENGINES.len() <= 32, "engines are a u32 mask");
        let engines = SEARCH_ENGINES
            .iter()
            .enumerate()
            .filter(|(_, e)| e.domains.iter().any(|d| matches_domain(host, d)))
            .fold(0u32, |m, (i, _)| m | 1 << i);
        HostSources {
            engines,
            social: SOCIAL_NETWORKS.iter().any(|d| matches_domain(host, d)),
        }
    }
}

/// [`classify`] for the hits of one file: the search engine and social
/// network tables are matched once per distinct referrer host (a file has
/// few), not once per hit. Same answers as [`classify`].
#[derive(Debug, Default)]
pub struct TrafficCache {
    hosts: foldhash::HashMap<String, HostSources>,
}

impl TrafficCache {
    /// Hosts remembered at most (then forgotten all at once): bounds the
    /// memory of a file with a new host on every row.
    const MAX_HOSTS: usize = 4_096;

    /// [`classify`], with the host's table matches remembered.
    pub fn classify(
        &mut self,
        referrer: Option<&str>,
        page_url: Option<&str>,
        internal_url_filters: &[String],
    ) -> Traffic {
        classify_with(referrer, page_url, internal_url_filters, |host| {
            if let Some(s) = self.hosts.get(host) {
                return *s;
            }
            if self.hosts.len() >= Self::MAX_HOSTS {
                self.hosts.clear();
            }
            let s = HostSources::of(host);
            self.hosts.insert(host.to_string(), s);
            s
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quick_trim_is_str_trim() {
        for s in [
            "",
            " ",
            "https://a.example/ ",
            "\u{a0}https://a.example/",
            "https://a.example/\u{2003}",
            "\thttps://a.example/x\n",
            "https://a.example/é",
            "ébc",
            "x",
        ] {
            assert_eq!(trim(s), s.trim(), "{s:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn the_quick_trim_is_str_trim_on_any_text(s in "\\PC{0,12}|[ \t\u{a0}\u{3000}a-z:/.]{0,12}") {
            proptest::prop_assert_eq!(trim(&s), s.trim());
        }
    }

    const PAGE: Option<&str> = Some("https://shop.example.com/cart");

    fn kind(referrer: Option<&str>) -> ReferrerType {
        classify(referrer, PAGE, &[]).referrer_type
    }

    #[test]
    fn an_empty_referrer_is_typed_or_bookmarked() {
        assert_eq!(kind(None), ReferrerType::TypedBookmarked);
        assert_eq!(kind(Some("")), ReferrerType::TypedBookmarked);
        assert_eq!(kind(Some("   ")), ReferrerType::TypedBookmarked);
    }

    #[test]
    fn a_referrer_without_its_protocol_is_typed_or_bookmarked() {
        assert_eq!(
            kind(Some("www.google.com/search?q=x")),
            ReferrerType::TypedBookmarked
        );
        assert_eq!(kind(Some("https:///nohost")), ReferrerType::TypedBookmarked);
    }

    #[test]
    fn a_referrer_on_the_same_host_is_internal() {
        assert_eq!(
            kind(Some("https://SHOP.example.com:443/home?q=1")),
            ReferrerType::Internal
        );
        // Another host of the same company is not, without filters.
        assert_eq!(
            kind(Some("https://blog.example.com/")),
            ReferrerType::OtherWebSite
        );
        // No page URL and no filters: nothing is internal.
        assert_eq!(
            classify(Some("https://shop.example.com/"), None, &[]).referrer_type,
            ReferrerType::OtherWebSite
        );
    }

    #[test]
    fn internal_url_filters_match_part_of_the_host() {
        let filters = vec!["Example.com".to_string()];
        for r in ["https://blog.example.com/x", "http://example.com"] {
            assert_eq!(
                classify(Some(r), PAGE, &filters).referrer_type,
                ReferrerType::Internal,
                "{r}"
            );
        }
        // The filters replace the page's host.
        let other = vec!["acme.test".to_string()];
        assert_eq!(
            classify(Some("https://shop.example.com/"), PAGE, &other).referrer_type,
            ReferrerType::OtherWebSite
        );
        // A filter is matched on the host, not the path.
        assert_eq!(
            classify(Some("https://news.test/example.com"), PAGE, &filters).referrer_type,
            ReferrerType::OtherWebSite
        );
        // Internal comes before search engines.
        let google = vec!["google".to_string()];
        assert_eq!(
            classify(Some("https://www.google.com/search?q=a"), PAGE, &google).referrer_type,
            ReferrerType::Internal
        );
    }

    #[test]
    fn the_per_file_cache_answers_as_classify() {
        let referrers = [
            None,
            Some("https://www.google.co.uk/search?q=shoes"),
            Some("https://www.google.co.uk/maps"),
            Some("https://WWW.Google.co.uk/search?q=boots"),
            Some("https://search.aol.com/x?query=a"),
            Some("https://search.aol.com/x?q=a"),
            Some("https://search.aol.com/x"),
            Some("https://m.facebook.com/"),
            Some("https://shop.example.com/home"),
            Some("https://partner.example.org/"),
            Some("mail://inbox"),
            Some("www.google.com/search?q=x"),
        ];
        let filters = ["partner".to_string()];
        let mut cache = TrafficCache::default();
        // Twice over, so the second pass is answered from the cache.
        for _ in 0..2 {
            for r in referrers {
                for f in [&[][..], &filters[..]] {
                    assert_eq!(cache.classify(r, PAGE, f), classify(r, PAGE, f), "{r:?}");
                }
            }
        }
        assert_eq!(cache.hosts.len(), 5, "one entry per external host");
    }

    #[test]
    fn search_engines_need_their_keyword_parameter() {
        let t = classify(Some("https://www.google.co.uk/search?q=shoes"), PAGE, &[]);
        assert_eq!(t.referrer_type, ReferrerType::SearchEngine);
        assert_eq!(t.search_engine, Some("Google"));
        let t = classify(Some("https://www.bing.com/search?form=x&q="), PAGE, &[]);
        assert_eq!(t.search_engine, Some("Microsoft Bing"));
        let t = classify(Some("https://search.yahoo.com/search?p=a"), PAGE, &[]);
        assert_eq!(t.search_engine, Some("Yahoo!"));
        // Without the parameter: an ordinary web site.
        let t = classify(Some("https://www.google.com/"), PAGE, &[]);
        assert_eq!(t.referrer_type, ReferrerType::OtherWebSite);
        assert_eq!(t.search_engine, None);
        // A look-alike host is not the engine.
        let t = classify(Some("https://google.example.net.evil/?q=1"), PAGE, &[]);
        assert_eq!(t.referrer_type, ReferrerType::OtherWebSite);
        let t = classify(Some("https://notgoogle.com/?q=1"), PAGE, &[]);
        assert_eq!(t.referrer_type, ReferrerType::OtherWebSite);
    }

    #[test]
    fn social_networks_email_and_files() {
        assert_eq!(
            kind(Some("https://m.facebook.com/story")),
            ReferrerType::Social
        );
        assert_eq!(kind(Some("https://t.co/abc")), ReferrerType::Social);
        assert_eq!(
            kind(Some("https://www.pinterest.fr/pin/1")),
            ReferrerType::Social
        );
        assert_eq!(
            kind(Some("https://notfacebook.com/")),
            ReferrerType::OtherWebSite
        );
        assert_eq!(
            kind(Some("imap://mail.example.org/INBOX")),
            ReferrerType::Email
        );
        assert_eq!(kind(Some("file:///C:/page.html")), ReferrerType::HardDrive);
    }

    #[test]
    fn hosts() {
        let cases = [
            ("https://www.Example.com/a/b?c=d", Some("www.example.com")),
            ("http://user:pw@host.example:8080/x", Some("host.example")),
            ("https://example.com", Some("example.com")),
            ("https://example.com.#frag", Some("example.com")),
            ("example.com/path", Some("example.com")),
            ("//cdn.example.org/x", Some("cdn.example.org")),
            ("http://[::1]:8080/", Some("[::1]")),
            ("https:///nohost", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(referrer_host(input).as_deref(), want, "{input}");
        }
    }
}
