//! How an op's list argument is read, and which integers fit.
//!
//! The NIF sees each element of a list (or non-tensor tuple) argument as
//! one of the [`Item`]s below, and this module decides what the whole list
//! is: integers (shapes, axes, indices), numbers (float parameters), or
//! tensors (each element then has to decode as one).

/// One element of a list argument, as the NIF read it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Item {
    /// An integer that fits in `i64`.
    Int(i64),
    /// An integer above `i64::MAX` that fits in `u64`.
    UInt(u64),
    /// An integer outside `i64` and `u64` (a bignum).
    BigInt,
    Float(f64),
    /// Anything else: a tensor, or a term that no op takes.
    Other,
}

/// What a list argument is.
#[derive(Clone, Debug, PartialEq)]
pub enum ListArg {
    Ints(Vec<i64>),
    Floats(Vec<f64>),
    /// A list of tensors (every element must decode as one).
    Tensors,
}

/// Why a list argument cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListError {
    /// An all-integer list with an integer outside `i64`.
    IntRange,
    /// A list of numbers with an integer outside `i64`.
    NumberRange,
}

/// Reads a list argument: all integers (each must fit in `i64`) are an
/// integer list, including the empty list; integers mixed with floats are a
/// float list; anything else is a tensor list.
///
/// ```
/// use emlx_pure::arg_list::{read_list, Item, ListArg};
/// assert_eq!(read_list(&[Item::Int(2), Item::Int(3)]), Ok(ListArg::Ints(vec![2, 3])));
/// ```
pub fn read_list(items: &[Item]) -> Result<ListArg, ListError> {
    let integer = |i: &Item| matches!(i, Item::Int(_) | Item::UInt(_) | Item::BigInt);
    if items.iter().all(integer) {
        return items
            .iter()
            .map(|i| match i {
                Item::Int(v) => Ok(*v),
                _ => Err(ListError::IntRange),
            })
            .collect::<Result<_, _>>()
            .map(ListArg::Ints);
    }
    if items
        .iter()
        .all(|i| integer(i) || matches!(i, Item::Float(_)))
    {
        return items
            .iter()
            .map(|i| match i {
                Item::Int(v) => Ok(*v as f64),
                Item::Float(f) => Ok(*f),
                _ => Err(ListError::NumberRange),
            })
            .collect::<Result<_, _>>()
            .map(ListArg::Floats);
    }
    Ok(ListArg::Tensors)
}

/// The [`Item`] for an integer, from what decoding it as `i64` and as
/// `u64` gave.
pub fn integer_item(as_i64: Option<i64>, as_u64: Option<u64>) -> Item {
    match (as_i64, as_u64) {
        (Some(v), _) => Item::Int(v),
        (None, Some(v)) => Item::UInt(v),
        _ => Item::BigInt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Item::*;

    #[test]
    fn integers_are_an_integer_list() {
        assert_eq!(
            read_list(&[Int(-1), Int(0), Int(i64::MAX)]),
            Ok(ListArg::Ints(vec![-1, 0, i64::MAX]))
        );
    }

    #[test]
    fn the_empty_list_is_an_integer_list() {
        // (`[]` for an op taking a list of tensors is read by the bridge as
        // the empty tensor list too.)
        assert_eq!(read_list(&[]), Ok(ListArg::Ints(vec![])));
    }

    #[test]
    fn integers_past_i64_are_refused_in_integer_lists() {
        assert_eq!(
            read_list(&[Int(1), UInt(u64::MAX)]),
            Err(ListError::IntRange)
        );
        assert_eq!(read_list(&[BigInt]), Err(ListError::IntRange));
    }

    #[test]
    fn integers_and_floats_are_a_float_list() {
        assert_eq!(
            read_list(&[Int(1), Float(2.5), Int(-3)]),
            Ok(ListArg::Floats(vec![1.0, 2.5, -3.0]))
        );
        assert_eq!(read_list(&[Float(0.5)]), Ok(ListArg::Floats(vec![0.5])));
    }

    #[test]
    fn integers_past_i64_are_refused_in_float_lists() {
        assert_eq!(
            read_list(&[Float(1.0), UInt(1 << 63)]),
            Err(ListError::NumberRange)
        );
        assert_eq!(
            read_list(&[BigInt, Float(1.0)]),
            Err(ListError::NumberRange)
        );
    }

    #[test]
    fn anything_else_makes_a_tensor_list() {
        assert_eq!(read_list(&[Other]), Ok(ListArg::Tensors));
        assert_eq!(read_list(&[Other, Int(1)]), Ok(ListArg::Tensors));
        assert_eq!(read_list(&[Float(1.0), Other]), Ok(ListArg::Tensors));
    }

    #[test]
    fn integers_are_signed_first_then_unsigned() {
        assert_eq!(integer_item(Some(-5), None), Int(-5));
        assert_eq!(integer_item(Some(5), Some(5)), Int(5));
        assert_eq!(integer_item(None, Some(u64::MAX)), UInt(u64::MAX));
        assert_eq!(integer_item(None, None), BigInt);
    }
}
