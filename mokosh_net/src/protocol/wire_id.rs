//! The one-byte wire ids (codec, compression) share their conversions.

/// For a `#[repr(u8)]` id enum: `as_u8`, `name`, `TryFrom<u8>` (unknown
/// values become `$error::$unknown { id }`), `From<_> for u8` and `Display` (the name).
macro_rules! wire_id {
    ($ty:ident, $error:ident :: $unknown:ident, $($variant:ident = $value:literal => $name:literal),+ $(,)?) => {
        impl $ty {
            /// The wire value of this id.
            #[must_use]
            pub const fn as_u8(self) -> u8 {
                self as u8
            }

            /// The lower-case name used in logs and documentation.
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)+
                }
            }
        }

        impl TryFrom<u8> for $ty {
            type Error = $error;

            fn try_from(value: u8) -> Result<Self, Self::Error> {
                match value {
                    $($value => Ok($ty::$variant),)+
                    id => Err($error::$unknown { id }),
                }
            }
        }

        impl From<$ty> for u8 {
            fn from(id: $ty) -> Self {
                id.as_u8()
            }
        }

        impl core::fmt::Display for $ty {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

pub(crate) use wire_id;
