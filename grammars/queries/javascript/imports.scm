(import_statement) @import
(program
  (lexical_declaration
    (variable_declarator value: (call_expression function: (identifier) @_require (#eq? @_require "require")))) @import)
(program
  (variable_declaration
    (variable_declarator value: (call_expression function: (identifier) @_require (#eq? @_require "require")))) @import)
