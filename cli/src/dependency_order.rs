//! Orders stylesheets so each is rewritten after everything it imports: a
//! stylesheet's fingerprint covers the fingerprinted names it references, so
//! those names must exist first. Cycles cannot be ordered and are reported.

use std::collections::{BTreeMap, BTreeSet};

/// `edges[a]` = the nodes `a` depends on. Returns every node, dependencies
/// first, deterministically; or the cycle found, as a path that starts and
/// ends on the same node.
pub fn dependency_order(
    edges: &BTreeMap<String, BTreeSet<String>>,
) -> Result<Vec<String>, Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        InProgress,
        Done,
    }
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
        order: &mut Vec<String>,
    ) -> Result<(), Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::InProgress) => {
                let start = stack.iter().position(|n| n == node).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(node.to_owned());
                return Err(cycle);
            }
            None => {}
        }
        marks.insert(node.to_owned(), Mark::InProgress);
        stack.push(node.to_owned());
        for dependency in edges.get(node).into_iter().flatten() {
            visit(dependency, edges, marks, stack, order)?;
        }
        stack.pop();
        marks.insert(node.to_owned(), Mark::Done);
        order.push(node.to_owned());
        Ok(())
    }

    let mut marks = BTreeMap::new();
    let mut order = Vec::with_capacity(edges.len());
    for node in edges.keys() {
        visit(node, edges, &mut marks, &mut Vec::new(), &mut order)?;
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(pairs: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        pairs
            .iter()
            .map(|(node, deps)| {
                (
                    (*node).to_owned(),
                    deps.iter().map(|d| (*d).to_owned()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn dependencies_come_first() {
        let edges = graph(&[
            ("/a.css", &["/c.css"]),
            ("/b.css", &[]),
            ("/c.css", &["/b.css"]),
        ]);
        assert_eq!(
            dependency_order(&edges),
            Ok(vec!["/b.css".into(), "/c.css".into(), "/a.css".into()])
        );
    }

    #[test]
    fn a_cycle_is_reported_as_a_path() {
        let edges = graph(&[
            ("/a.css", &["/b.css"]),
            ("/b.css", &["/c.css"]),
            ("/c.css", &["/a.css"]),
        ]);
        assert_eq!(
            dependency_order(&edges),
            Err(vec![
                "/a.css".into(),
                "/b.css".into(),
                "/c.css".into(),
                "/a.css".into()
            ])
        );
        let self_import = graph(&[("/a.css", &["/a.css"])]);
        assert_eq!(
            dependency_order(&self_import),
            Err(vec!["/a.css".into(), "/a.css".into()])
        );
    }
}
