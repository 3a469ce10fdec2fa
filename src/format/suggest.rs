//! "Did you mean ...?" for misspelt task and variable names.

/// The candidate closest to `input`, if it is close enough to be a plausible typo.
pub fn did_you_mean<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&input.to_ascii_lowercase(), &c.to_ascii_lowercase()), c))
        .filter(|(distance, c)| *distance <= 2.max(c.len() / 4))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// For a task name: the closest one by spelling, else the tasks that have `input` as one of
/// their `-`-separated words (`status` → `multi-tenancy-status`), as "a or b".
pub fn did_you_mean_task<'a>(input: &str, names: impl IntoIterator<Item = &'a str> + Clone) -> Option<String> {
    if let Some(close) = did_you_mean(input, names.clone()) {
        return Some(close.to_string());
    }
    let input = input.to_ascii_lowercase();
    let words: Vec<&str> = input.split('-').filter(|w| !w.is_empty()).collect();
    if words.is_empty() {
        return None;
    }
    let matches: Vec<&str> = names
        .into_iter()
        .filter(|name| {
            let parts: Vec<&str> = name.split('-').collect();
            parts.windows(words.len()).any(|window| window == words.as_slice())
        })
        .collect();
    (!matches.is_empty() && matches.len() <= 3).then(|| matches.join(" or "))
}

#[cfg(test)]
mod tests {
    use super::{did_you_mean, did_you_mean_task};

    #[test]
    fn a_word_of_a_task_name_suggests_the_task() {
        let tasks = ["multi-tenancy-status", "backup-client", "verify-backup", "setup-roles"];
        assert_eq!(did_you_mean_task("status", tasks).as_deref(), Some("multi-tenancy-status"));
        assert_eq!(did_you_mean_task("backup", tasks).as_deref(), Some("backup-client or verify-backup"));
        assert_eq!(did_you_mean_task("setup-rols", tasks).as_deref(), Some("setup-roles"));
        assert_eq!(did_you_mean_task("deploy", tasks), None);
    }

    #[test]
    fn finds_transpositions_and_typos() {
        let vars = ["CLIENT_ID", "CLIENT_NAME", "CLIENT_DOMAIN"];
        assert_eq!(did_you_mean("CLIENT_DOMIAN", vars), Some("CLIENT_DOMAIN"));
        assert_eq!(did_you_mean("client_id", vars), Some("CLIENT_ID"));
        assert_eq!(did_you_mean("COLOUR", vars), None);
    }
}
