//! The `drop_reasons!` macro: a data path's drop-reason enum with one counter slot per reason.
//!
//! Both data paths (the MUX's and the host agent's) declare their drop reasons the same way:
//! each variant with a doc comment (its counter's description) and a `snake_case` name (its
//! counter's name in JSON and metrics). The macro derives `ALL`, `COUNT`, `name()`,
//! `description()` and `index()` from that one list, so adding a reason cannot forget its
//! counter or its documentation.

/// Declares `pub enum DropReason` from `/// doc` `Variant => "name",` entries.
#[macro_export]
macro_rules! drop_reasons {
    ($( $(#[doc = $doc:literal])* $variant:ident => $name:literal, )*) => {
        /// Why a packet was dropped. Every variant has its own counter.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            /// Number of reasons (length of the counter array).
            pub const COUNT: usize = Self::ALL.len();

            /// The counter's name in JSON and metrics output (`snake_case`).
            pub fn name(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $name,)*
                }
            }

            /// The counter's description (the variant's doc comment).
            pub fn description(self) -> &'static str {
                match self {
                    $(DropReason::$variant => concat!($($doc),*).trim_ascii_start(),)*
                }
            }

            /// A dense index in `0..COUNT`, for the counter array.
            pub fn index(self) -> usize {
                self as usize
            }
        }
    };
}
