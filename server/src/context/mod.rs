//! Prompt builder: a pure function from a document snapshot, a cursor and a token budget to the
//! prompt the engine evaluates. No IO, no clock, no globals.
