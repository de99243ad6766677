//! The classification rules: their text format, parser and compiled form.
//!
//! This module owns the rules *language*; applying rules to stacks is
//! [`crate::classify`]. The format is documented at the top of the default rules
//! file, [`DEFAULT_RULES`], which is compiled into the crate and used unless the
//! caller passes other rules text (the CLI's `--rules FILE`).

use regex::{Regex, RegexSet};

use crate::Error;

/// The default rules, as text (the file `rules/default.rules` of this crate).
pub const DEFAULT_RULES: &str = include_str!("../rules/default.rules");

/// The category of stacks that no rule claims.
pub const OTHER: &str = "other";

/// The categories every report lists, in this order, even when empty; categories
/// named only by custom rules follow them in the order of first appearance.
pub const STANDARD_CATEGORIES: [&str; 7] = [
    "userland-proxy",
    "bridge",
    "netfilter",
    "tcp-ip",
    "app",
    "container-runtime",
    OTHER,
];

/// Where a rule's pattern looks and how much it decides (see the module docs of
/// [`crate::classify`] for the precedence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RuleKind {
    /// `owns-process`: the process frame matches; the whole stack is the category.
    OwnsProcess,
    /// `owns-frame`: any frame matches; the whole stack is the category.
    OwnsFrame,
    /// `frame`: the innermost matching frame decides.
    Frame,
    /// `frame-weak`: the innermost matching frame decides if no `frame` rule matched.
    FrameWeak,
    /// `lua-frame`: a frame read from a Lua stack (marked `_[l]` or `_[lj]`,
    /// see `nflame_profile::lua`) matches; it decides like a `frame` rule.
    LuaFrame,
    /// `process`: the process frame decides when no frame rule matched.
    Process,
}

impl RuleKind {
    /// The keyword of the rules format.
    pub fn keyword(self) -> &'static str {
        match self {
            RuleKind::OwnsProcess => "owns-process",
            RuleKind::OwnsFrame => "owns-frame",
            RuleKind::Frame => "frame",
            RuleKind::FrameWeak => "frame-weak",
            RuleKind::LuaFrame => "lua-frame",
            RuleKind::Process => "process",
        }
    }

    const ALL: [RuleKind; 6] = [
        RuleKind::OwnsProcess,
        RuleKind::OwnsFrame,
        RuleKind::Frame,
        RuleKind::FrameWeak,
        RuleKind::LuaFrame,
        RuleKind::Process,
    ];

    fn from_keyword(word: &str) -> Option<RuleKind> {
        RuleKind::ALL.into_iter().find(|k| k.keyword() == word)
    }

    fn index(self) -> usize {
        match self {
            RuleKind::OwnsProcess => 0,
            RuleKind::OwnsFrame => 1,
            RuleKind::Frame => 2,
            RuleKind::FrameWeak => 3,
            RuleKind::Process => 4,
            RuleKind::LuaFrame => 5,
        }
    }
}

/// One parsed rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The category it assigns.
    pub category: String,
    /// Where it looks.
    pub kind: RuleKind,
    /// The pattern as written.
    pub pattern: String,
    /// The line of the rules text it came from (1-based).
    pub line: usize,
}

/// A compiled rule set: the rules, the category list and one [`RegexSet`] per kind.
#[derive(Debug, Clone)]
pub struct Rules {
    source_name: String,
    rules: Vec<Rule>,
    categories: Vec<String>,
    /// Per kind: the regex set and, per pattern of the set, the category index.
    sets: [(RegexSet, Vec<usize>); 6],
}

impl Default for Rules {
    /// The compiled [`DEFAULT_RULES`].
    fn default() -> Rules {
        // The default text is part of the crate and covered by tests.
        Rules::parse("<default rules>", DEFAULT_RULES).expect("the default rules parse")
    }
}

impl Rules {
    /// Parses rules text. `source_name` (e.g. the file name) prefixes error
    /// messages, which also give the line: `rules.txt:12: unknown kind "frames"`.
    pub fn parse(source_name: &str, text: &str) -> Result<Rules, Error> {
        let mut rules = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |message: String| Error::Rules {
                source_name: source_name.to_string(),
                line: line_no,
                message,
            };
            let (category, rest) = split_word(line);
            let (kind_word, pattern) = split_word(rest);
            if kind_word.is_empty() || pattern.is_empty() {
                return Err(err(format!(
                    "expected `CATEGORY KIND PATTERN`, found {line:?}"
                )));
            }
            if !valid_category(category) {
                return Err(err(format!(
                    "invalid category {category:?} (use lower-case letters, digits and '-', \
                     starting with a letter)"
                )));
            }
            let kind = RuleKind::from_keyword(kind_word).ok_or_else(|| {
                err(format!(
                    "unknown kind {kind_word:?} (expected one of: {})",
                    RuleKind::ALL.map(|k| k.keyword()).join(", ")
                ))
            })?;
            if let Err(e) = Regex::new(pattern) {
                return Err(err(format!("invalid pattern {pattern:?}: {e}")));
            }
            rules.push(Rule {
                category: category.to_string(),
                kind,
                pattern: pattern.to_string(),
                line: line_no,
            });
        }
        Rules::compile(source_name, rules)
    }

    fn compile(source_name: &str, rules: Vec<Rule>) -> Result<Rules, Error> {
        let mut categories: Vec<String> =
            STANDARD_CATEGORIES.iter().map(|c| c.to_string()).collect();
        for r in &rules {
            if !categories.contains(&r.category) {
                categories.push(r.category.clone());
            }
        }
        let mut per_kind: [(Vec<&str>, Vec<usize>); 6] = Default::default();
        for r in &rules {
            let cat = categories
                .iter()
                .position(|c| *c == r.category)
                .unwrap_or_default();
            let (patterns, cats) = &mut per_kind[r.kind.index()];
            patterns.push(&r.pattern);
            cats.push(cat);
        }
        let build = |(patterns, cats): (Vec<&str>, Vec<usize>)| {
            RegexSet::new(&patterns)
                .map(|set| (set, cats))
                .map_err(|e| Error::Rules {
                    source_name: source_name.to_string(),
                    line: 0,
                    message: format!("the patterns do not compile together: {e}"),
                })
        };
        let [a, b, c, d, e, f] = per_kind;
        let sets = [
            build(a)?,
            build(b)?,
            build(c)?,
            build(d)?,
            build(e)?,
            build(f)?,
        ];
        Ok(Rules {
            source_name: source_name.to_string(),
            rules,
            categories,
            sets,
        })
    }

    /// The name given to [`Rules::parse`].
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// The rules in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// All categories: [`STANDARD_CATEGORIES`] then the custom ones.
    pub fn categories(&self) -> &[String] {
        &self.categories
    }

    /// The index (into [`Rules::categories`]) of `other`.
    pub fn other_index(&self) -> usize {
        // STANDARD_CATEGORIES puts it at a fixed place.
        STANDARD_CATEGORIES.len() - 1
    }

    /// The category index of the first rule of `kind` matching `text`.
    pub(crate) fn first_match(&self, kind: RuleKind, text: &str) -> Option<usize> {
        let (set, cats) = &self.sets[kind.index()];
        if set.is_empty() {
            return None;
        }
        set.matches(text).iter().next().map(|i| cats[i])
    }
}

fn split_word(s: &str) -> (&str, &str) {
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

fn valid_category(c: &str) -> bool {
    let mut chars = c.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rules_parse() {
        let r = Rules::default();
        assert!(r.rules().len() >= 10);
        assert_eq!(&r.categories()[..7], STANDARD_CATEGORIES.map(String::from));
        assert_eq!(r.categories()[r.other_index()], OTHER);
    }

    #[test]
    fn parses_kinds_comments_and_custom_categories() {
        let text = "# comment\n\n  lua  frame  ^lj_ \napp process ^nginx$\nbridge owns-frame a b\n";
        let r = Rules::parse("t.rules", text).unwrap();
        assert_eq!(r.rules().len(), 3);
        assert_eq!(r.rules()[0].category, "lua");
        assert_eq!(r.rules()[0].line, 3);
        assert_eq!(r.rules()[0].pattern, "^lj_");
        // The pattern is the rest of the line, spaces included.
        assert_eq!(r.rules()[2].pattern, "a b");
        assert_eq!(r.categories().len(), 8);
        assert_eq!(r.categories()[7], "lua");
        assert_eq!(r.first_match(RuleKind::Frame, "lj_vm"), Some(7));
        assert_eq!(r.first_match(RuleKind::Process, "nginx"), Some(4));
        assert_eq!(r.first_match(RuleKind::Process, "nginx2"), None);
        assert_eq!(r.first_match(RuleKind::OwnsProcess, "x"), None);
    }

    #[test]
    fn first_rule_of_a_kind_wins() {
        let r = Rules::parse("t", "tcp-ip frame ^ip_\nnetfilter frame ^ip_\n").unwrap();
        assert_eq!(r.first_match(RuleKind::Frame, "ip_rcv"), Some(3));
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            (
                "app frame ^a\nbad\n",
                "t.rules:2: expected `CATEGORY KIND PATTERN`",
            ),
            ("\n\nApp frame x\n", "t.rules:3: invalid category \"App\""),
            ("app frames x\n", "t.rules:1: unknown kind \"frames\""),
            ("app frame (x\n", "t.rules:1: invalid pattern \"(x\""),
            ("app frame\n", "t.rules:1: expected"),
            ("9x frame a\n", "t.rules:1: invalid category"),
        ];
        for (text, want) in cases {
            let e = Rules::parse("t.rules", text).unwrap_err().to_string();
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn empty_rules_are_valid() {
        let r = Rules::parse("t", "# nothing\n").unwrap();
        assert!(r.rules().is_empty());
        assert_eq!(r.first_match(RuleKind::Frame, "x"), None);
    }
}
