//! The artifacts' `MailTemplate`: the HTML document around a notification
//! (docs/velociraptor.md §3.2).

use super::html::Html;

/// One titled block of the e-mail body.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub title: String,
    pub body: Html,
}

/// The parts of an HTML notification.
#[derive(Debug, Clone, PartialEq)]
pub struct MailTemplate {
    /// The coloured header line.
    pub title: Html,
    /// The paragraph under the header.
    pub summary: Html,
    /// `<h2>` title and content, in order.
    pub sections: Vec<Section>,
    pub footer: Html,
    /// Red header when true (failures, alerts), green otherwise.
    pub warning: bool,
}

const STYLE: &str = concat!(
    "body { font-family: Arial, sans-serif; background-color: #f6f6f6; color: #333333; margin: 0; padding: 0; }\n",
    ".email-container { max-width: 750px; margin: 20px auto; background-color: #ffffff; padding: 20px; border-radius: 8px; box-shadow: 0 0 10px rgba(0, 0, 0, 0.1); }\n",
    ".header { color: #ffffff; text-align: center; font-size: 24px; font-weight: normal; padding: 20px; border-radius: 8px 8px 0 0; margin: 0; }\n",
    ".header-ok { background-color: #4CAF50; }\n",
    ".header-warning { background-color: #DF0B0B; }\n",
    ".content { padding: 0 20px; }\n",
    "h2 { font-size: 18px; font-weight: 600; color: #555555; }\n",
    ".table-container { overflow-x: auto; }\n",
    "table { width: 100%; border-collapse: collapse; }\n",
    "th, td { padding: 12px; border: 1px solid #dddddd; text-align: left; vertical-align: top; overflow-wrap: anywhere; word-break: break-word; }\n",
    "th { background-color: #f4f4f4; }\n",
    "td table { border-collapse: separate; border-spacing: 10px 0; }\n",
    "td table td, td table th { border: none; padding: 0; }\n",
    "ul { padding: 0; margin: 0; list-style-position: inside; }\n",
    ".footer { text-align: center; font-size: 12px; color: #777777; padding: 20px; }\n",
);

impl MailTemplate {
    /// The complete HTML document.
    pub fn render(&self) -> String {
        let header_class = if self.warning {
            "header header-warning"
        } else {
            "header header-ok"
        };
        let mut out = String::with_capacity(4096);
        out.push_str("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"UTF-8\">\n");
        out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1.0\">\n");
        out.push_str("<style>\n");
        out.push_str(STYLE);
        out.push_str("</style>\n</head>\n<body>\n<div class=\"email-container\">\n");
        out.push_str(&format!("<h1 class=\"{header_class}\">{}</h1>\n", self.title));
        out.push_str("<div class=\"content\">\n");
        out.push_str(&format!("<p>{}</p>\n", self.summary));
        for section in &self.sections {
            out.push_str(&format!("<h2>{}</h2>\n", Html::text(&section.title)));
            out.push_str(&format!("<div class=\"table-container\">{}</div>\n", section.body));
        }
        out.push_str("</div>\n");
        out.push_str(&format!("<div class=\"footer\">{}</div>\n", self.footer));
        out.push_str("</div>\n</body>\n</html>\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(warning: bool) -> MailTemplate {
        MailTemplate {
            title: Html::text("Server alert"),
            summary: Html::text("An alert"),
            sections: vec![Section {
                title: "Alert <details>".into(),
                body: Html::text("x"),
            }],
            footer: Html::text("footer"),
            warning,
        }
    }

    #[test]
    fn header_is_red_for_warnings_and_green_otherwise() {
        assert!(
            template(true)
                .render()
                .contains("<h1 class=\"header header-warning\">Server alert</h1>")
        );
        assert!(template(false).render().contains("<h1 class=\"header header-ok\">"));
        assert!(STYLE.contains("#DF0B0B") && STYLE.contains("#4CAF50"));
    }

    #[test]
    fn section_titles_are_escaped() {
        assert!(template(true).render().contains("<h2>Alert &lt;details&gt;</h2>"));
    }
}
