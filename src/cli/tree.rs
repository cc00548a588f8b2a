//! A small tree printer for human output.

/// A node: its line, and its children.
pub struct Node {
    pub label: String,
    pub children: Vec<Node>,
}

impl Node {
    pub fn new(label: impl Into<String>) -> Node {
        Node {
            label: label.into(),
            children: Vec::new(),
        }
    }

    /// Adds a leaf `label`.
    pub fn leaf(&mut self, label: impl Into<String>) -> &mut Node {
        self.children.push(Node::new(label));
        self.children.last_mut().unwrap()
    }

    /// Renders the tree with box-drawing characters.
    pub fn render(&self) -> String {
        let mut out = format!("{}\n", self.label);
        render_children(&self.children, "", &mut out);
        out
    }
}

fn render_children(children: &[Node], prefix: &str, out: &mut String) {
    for (i, c) in children.iter().enumerate() {
        let last = i + 1 == children.len();
        out.push_str(&format!(
            "{prefix}{}{}\n",
            if last { "└── " } else { "├── " },
            c.label
        ));
        let next = format!("{prefix}{}", if last { "    " } else { "│   " });
        render_children(&c.children, &next, out);
    }
}
