//! User agents to browser, operating system and device type.
//!
//! The matching is the uap-core rules (`data/uap-core/regexes.json`, the
//! `regexes.yaml` every ua-parser implementation shares) run by the
//! `ua-parser` crate: the rules are data, compiled into the binary and
//! turned into one [`ua_parser::Extractor`] per process, on first use.
//!
//! The rules name a browser family and version, an OS family and version
//! and a device (family, brand, model). The device type is read from those
//! names by [`device_type`]; the tables it uses are at the top of this
//! module.

use std::sync::{Arc, LazyLock};

use foldhash::HashMap;

/// The uap-core rules, as JSON.
const RULES: &str = include_str!("../data/uap-core/regexes.json");

/// The compiled rules, built once per process.
static EXTRACTOR: LazyLock<ua_parser::Extractor<'static>> = LazyLock::new(|| {
    let regexes: ua_parser::Regexes<'static> =
        serde_json::from_str(RULES).expect("the embedded uap-core rules are valid JSON");
    ua_parser::Extractor::try_from(regexes).expect("the embedded uap-core rules compile")
});

/// Compiles the rules now rather than on the first user agent (a server
/// calls this at start, so that the first file does not pay for it).
pub fn warm_up() {
    LazyLock::force(&EXTRACTOR);
}

/// Devices the rules name that are tablets (`device` family).
const TABLET_DEVICES: &[&str] = &["iPad", "Generic Tablet", "Kindle", "Kindle Fire"];
/// Brands the rules give to tablets they know only generically.
const TABLET_BRANDS: &[&str] = &["Generic_Android_Tablet"];
/// Devices the rules name that are phones.
const PHONE_DEVICES: &[&str] = &[
    "iPhone",
    "iPod",
    "Generic Smartphone",
    "Generic Feature Phone",
];
/// Operating systems of phones and tablets (a device of these systems that
/// is not a tablet is a phone).
const MOBILE_OS: &[&str] = &[
    "iOS",
    "Android",
    "Windows Phone",
    "BlackBerry OS",
    "BlackBerry Tablet OS",
    "Symbian OS",
    "Symbian^3",
    "KaiOS",
    "Firefox OS",
    "HarmonyOS",
];
/// The name the rules give to robots, as a device and as a browser.
const SPIDER: &str = "Spider";
/// What the rules answer for a part they do not recognise.
const OTHER: &str = "Other";

/// The kind of device a hit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceType {
    /// A computer (and anything the rules do not place elsewhere).
    Desktop,
    /// A phone.
    Mobile,
    /// A tablet.
    Tablet,
    /// A robot: crawler, spider, monitor, link previewer.
    Bot,
}

impl DeviceType {
    /// The lake's value: `desktop`, `mobile`, `tablet`, `bot`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceType::Desktop => "desktop",
            DeviceType::Mobile => "mobile",
            DeviceType::Tablet => "tablet",
            DeviceType::Bot => "bot",
        }
    }
}

/// What a user agent says about its browser, system and device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Browser family (`Chrome`, `Mobile Safari`, `Googlebot`), `Other`
    /// when the rules do not know it.
    pub browser: String,
    /// `major` or `major.minor` of the browser; `None` when not given.
    pub browser_version: Option<String>,
    /// Operating system family (`Windows`, `Mac OS X`, `iOS`, `Android`),
    /// `Other` when unknown.
    pub os: String,
    /// `major` or `major.minor` of the system; `None` when not given.
    pub os_version: Option<String>,
    /// The device type.
    pub device_type: DeviceType,
}

impl Device {
    /// Whether the hit came from a robot.
    pub fn is_bot(&self) -> bool {
        self.device_type == DeviceType::Bot
    }
}

fn version<S: AsRef<str>>(major: Option<S>, minor: Option<S>) -> Option<String> {
    let major = major.filter(|m| !m.as_ref().is_empty())?;
    Some(match minor.filter(|m| !m.as_ref().is_empty()) {
        Some(minor) => format!("{}.{}", major.as_ref(), minor.as_ref()),
        None => major.as_ref().to_string(),
    })
}

/// Parses one user agent with the uap-core rules.
pub fn parse(user_agent: &str) -> Device {
    let (ua, os, dev) = EXTRACTOR.extract(user_agent);
    let (browser, browser_version) = match ua {
        Some(u) => (u.family.into_owned(), version(u.major, u.minor)),
        None => (OTHER.to_string(), None),
    };
    let (os, os_version) = match os {
        Some(o) => (o.os.into_owned(), version(o.major, o.minor)),
        None => (OTHER.to_string(), None),
    };
    let (family, brand, model) = match &dev {
        Some(d) => (
            d.device.as_ref(),
            d.brand.as_deref().unwrap_or(""),
            d.model.as_deref().unwrap_or(""),
        ),
        None => (OTHER, "", ""),
    };
    let device_type = device_type(&Parsed {
        user_agent,
        browser: &browser,
        os: &os,
        device: family,
        brand,
        model,
    });
    Device {
        browser,
        browser_version,
        os,
        os_version,
        device_type,
    }
}

/// The names the rules gave a user agent.
#[derive(Debug, Clone, Copy)]
pub struct Parsed<'a> {
    /// The user agent itself.
    pub user_agent: &'a str,
    /// Browser family.
    pub browser: &'a str,
    /// OS family.
    pub os: &'a str,
    /// Device family.
    pub device: &'a str,
    /// Device brand (empty when none).
    pub brand: &'a str,
    /// Device model (empty when none).
    pub model: &'a str,
}

/// The device type of a parsed user agent, in this order:
///
/// 1. `bot` when the rules call the device or the browser `Spider` (their
///    name for every robot they recognise).
/// 2. `tablet` for a tablet device or brand of the rules (iPad, Kindle,
///    generic tablets), and for an Android device whose user agent lacks
///    the `Mobile` token (the convention Android browsers follow: tablets
///    leave it out).
/// 3. `mobile` for a phone device of the rules, or any other device of a
///    phone or tablet system (iOS, Android, Windows Phone...).
/// 4. `desktop` otherwise (computers, and devices the rules do not know).
pub fn device_type(p: &Parsed<'_>) -> DeviceType {
    if p.device == SPIDER || p.browser == SPIDER {
        return DeviceType::Bot;
    }
    if TABLET_DEVICES.contains(&p.device)
        || TABLET_BRANDS.contains(&p.brand)
        || (p.brand == "Amazon" && p.model.starts_with("Kindle"))
    {
        return DeviceType::Tablet;
    }
    if p.os == "Android" && !p.user_agent.contains("Mobile") {
        return DeviceType::Tablet;
    }
    if PHONE_DEVICES.contains(&p.device) || MOBILE_OS.contains(&p.os) {
        return DeviceType::Mobile;
    }
    DeviceType::Desktop
}

/// Distinct user agents one [`DeviceCache`] keeps; past it the cache starts
/// again empty, so a file of all-different user agents costs a parse per
/// row but no more memory.
pub const MAX_CACHED_USER_AGENTS: usize = 20_000;

/// Each distinct user agent of a file parsed once.
#[derive(Debug)]
pub struct DeviceCache {
    seen: HashMap<Box<str>, Arc<Device>>,
    parses: u64,
    capacity: usize,
}

impl Default for DeviceCache {
    fn default() -> Self {
        DeviceCache::with_capacity(MAX_CACHED_USER_AGENTS)
    }
}

impl DeviceCache {
    /// A cache remembering at most `capacity` user agents.
    pub fn with_capacity(capacity: usize) -> DeviceCache {
        DeviceCache {
            seen: HashMap::default(),
            parses: 0,
            capacity: capacity.max(1),
        }
    }

    /// The device of `user_agent`, parsed on its first sighting.
    pub fn get(&mut self, user_agent: &str) -> Arc<Device> {
        if let Some(d) = self.seen.get(user_agent) {
            return d.clone();
        }
        if self.seen.len() >= self.capacity {
            self.seen.clear();
        }
        self.parses += 1;
        let d = Arc::new(parse(user_agent));
        self.seen.insert(user_agent.into(), d.clone());
        d
    }

    /// User agents parsed so far.
    pub fn parses(&self) -> u64 {
        self.parses
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ua: &str, browser: &str, os: &str, t: DeviceType) {
        let d = parse(ua);
        assert_eq!(
            (d.browser.as_str(), d.os.as_str(), d.device_type),
            (browser, os, t),
            "{ua}"
        );
    }

    #[test]
    fn desktop_browsers() {
        check(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
            "Chrome",
            "Windows",
            DeviceType::Desktop,
        );
        check(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
            "Safari",
            "Mac OS X",
            DeviceType::Desktop,
        );
        check(
            "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
            "Firefox",
            "Ubuntu",
            DeviceType::Desktop,
        );
        let d = parse("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91");
        assert_eq!(d.browser, "Edge");
        assert_eq!(d.browser_version.as_deref(), Some("120.0"));
        assert_eq!(d.os_version.as_deref(), Some("10"));
    }

    #[test]
    fn a_bot_user_agent_is_a_bot() {
        for ua in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
            "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.71 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        ] {
            let d = parse(ua);
            assert_eq!(d.device_type, DeviceType::Bot, "{ua}: {d:?}");
            assert!(d.is_bot());
        }
    }

    #[test]
    fn tablets_are_not_phones() {
        check(
            "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
            "Mobile Safari",
            "iOS",
            DeviceType::Tablet,
        );
        check(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
            "Mobile Safari",
            "iOS",
            DeviceType::Mobile,
        );
        // The same Android system: a tablet without the Mobile token, a
        // phone with it.
        check(
            "Mozilla/5.0 (Linux; Android 13; SM-X706B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
            "Chrome",
            "Android",
            DeviceType::Tablet,
        );
        check(
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
            "Chrome Mobile",
            "Android",
            DeviceType::Mobile,
        );
    }

    #[test]
    fn unknown_user_agents_are_desktops_of_unknown_browsers() {
        let d = parse("something nobody knows");
        assert_eq!(d.browser, "Other");
        assert_eq!(d.os, "Other");
        assert_eq!(d.device_type, DeviceType::Desktop);
        assert_eq!(d.browser_version, None);
    }

    #[test]
    fn the_generators_user_agents_are_the_device_types_it_says() {
        for (ua, t) in bdia_format::generate::USER_AGENTS {
            assert_eq!(parse(ua).device_type.as_str(), *t, "{ua}");
            let continued = format!("{ua}\n(continued)");
            assert_eq!(parse(&continued).device_type.as_str(), *t, "{continued}");
        }
    }

    #[test]
    fn the_cache_parses_each_user_agent_once() {
        let mut c = DeviceCache::default();
        let a = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
        for _ in 0..5 {
            assert!(c.get(a).is_bot());
            assert!(!c.get("curl/8.0").is_bot());
        }
        assert_eq!(c.parses(), 2);
    }

    #[test]
    fn the_cache_holds_at_most_its_capacity() {
        let mut c = DeviceCache::with_capacity(3);
        for i in 0..10 {
            c.get(&format!("agent {i}"));
            assert!(c.seen.len() <= 3);
        }
        assert_eq!(c.parses(), 10);
        // Started again empty after the third: the last ones are kept.
        c.get("agent 9");
        assert_eq!(c.parses(), 10);
    }
}
