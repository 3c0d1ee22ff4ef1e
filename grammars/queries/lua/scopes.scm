(function_declaration body: (block) @body) @scope.function
(function_definition body: (block) @body) @scope.function
