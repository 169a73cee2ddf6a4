//! Who a Vault client authenticates as, in a form every auth method fills the same way.

/// Who a client authenticates as. Holds no secret: only what tells identities apart, so a
/// changed credential (new Secret resourceVersion, recreated ServiceAccount) is a new identity.
/// Built by the method's file under [`super::auth`]; its fields, in order, make the key under
/// which the identity's token is kept across restarts, so their names and order are persisted.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    method: &'static str,
    label: String,
    fields: Vec<(&'static str, Field)>,
}

/// One value that tells identities apart.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    Text(String),
    List(Vec<String>),
}

impl From<&str> for Field {
    fn from(value: &str) -> Self {
        Field::Text(value.to_owned())
    }
}

impl From<String> for Field {
    fn from(value: String) -> Self {
        Field::Text(value)
    }
}

impl From<&[String]> for Field {
    fn from(value: &[String]) -> Self {
        Field::List(value.to_vec())
    }
}

/// The method name of the operator's own token.
const OPERATOR: &str = "operator";

impl Identity {
    /// An identity of auth method `method` (`kubernetes`, `jwt`, …); `label` names it in
    /// metrics and logs and must hold nothing secret.
    pub fn new(method: &'static str, label: String, fields: Vec<(&'static str, Field)>) -> Self {
        Identity { method, label, fields }
    }

    /// The operator's own token (`--vault-token-file`), for allow-listed namespaces.
    pub fn operator() -> Self {
        Identity::new(OPERATOR, OPERATOR.into(), Vec::new())
    }

    pub fn is_operator(&self) -> bool {
        self.method == OPERATOR
    }

    /// The auth method, as Vault names it (`operator` for the operator's own token).
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// A metric label that tells identities apart without anything secret in it.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// What tells this identity apart from others of its method, in a fixed order.
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, &Field)> {
        self.fields.iter().map(|(name, value)| (*name, value))
    }
}
