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

#[cfg(test)]
mod tests {
    use super::did_you_mean;

    #[test]
    fn finds_transpositions_and_typos() {
        let vars = ["CLIENT_ID", "CLIENT_NAME", "CLIENT_DOMAIN"];
        assert_eq!(did_you_mean("CLIENT_DOMIAN", vars), Some("CLIENT_DOMAIN"));
        assert_eq!(did_you_mean("client_id", vars), Some("CLIENT_ID"));
        assert_eq!(did_you_mean("COLOUR", vars), None);
    }
}
