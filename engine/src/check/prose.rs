//! Lists that sentences name. A sentence that says "one of A, B" or "isolated by A" takes a
//! [`NonEmpty`] list, so an empty list cannot reach the prose: the caller must choose the
//! sentence for "none" where it builds the value. Pure.

use std::fmt;

/// A list with at least one element (its constructors see to it; the field is private).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonEmpty<T> {
    items: Vec<T>,
}

impl<T> NonEmpty<T> {
    pub fn new(first: T) -> Self {
        NonEmpty { items: vec![first] }
    }

    /// `None` for an empty vector.
    pub fn from_vec(items: Vec<T>) -> Option<Self> {
        (!items.is_empty()).then_some(NonEmpty { items })
    }

    pub fn first(&self) -> &T {
        // Never out of bounds: the constructors keep one item at least.
        &self.items[0]
    }

    pub fn is_single(&self) -> bool {
        self.items.len() == 1
    }

    /// The items, never empty.
    pub fn as_slice(&self) -> &[T] {
        &self.items
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter()
    }

    pub fn to_vec(&self) -> Vec<T>
    where
        T: Clone,
    {
        self.items.clone()
    }
}

impl<T: fmt::Display> NonEmpty<T> {
    /// `a, b, c`.
    pub fn joined(&self) -> String {
        self.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `a b c`, as resolv.conf lists.
    pub fn spaced(&self) -> String {
        self.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
    }

    /// `a`, or `one of a, b` for more than one.
    pub fn one_of(&self) -> String {
        if self.is_single() {
            self.joined()
        } else {
            format!("one of {}", self.joined())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::NonEmpty;

    #[test]
    fn an_empty_vector_is_no_list() {
        assert_eq!(NonEmpty::<String>::from_vec(vec![]), None);
    }

    #[test]
    fn one_item_is_named_alone_and_several_as_one_of() {
        assert_eq!(NonEmpty::new("shop/a").one_of(), "shop/a");
        let two = NonEmpty::from_vec(vec!["shop/a", "shop/b"]).unwrap();
        assert_eq!(two.one_of(), "one of shop/a, shop/b");
    }
}
